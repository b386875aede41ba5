package micro

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/microgrpc/microgrpc/internal/addr"
	"github.com/microgrpc/microgrpc/internal/backoff"
	"github.com/microgrpc/microgrpc/resolver"
)

// Run starts the service and blocks until it has shut down.
//
// It runs the before-start hooks, listens (so the announced address is
// always one that is bound), serves, registers the node with the endpoints
// of every service on the server, runs the after-start hooks, and refreshes
// the registration every RegisterInterval. On SIGINT or SIGTERM (unless
// WithSignal(false)) or when the context given with WithContext is done, it
// shuts down in order: before-stop hooks, health NOT_SERVING, deregistration,
// a short wait for the deregistration to reach clients, a graceful stop of
// the server while the subscriptions drain, closing the connections made by
// Dial and the broker, and the after-stop hooks. The whole sequence shares
// one deadline, the grace period (WithGracePeriod): calls in flight run on
// during the earlier steps, and whatever is still running at the deadline
// (a stuck handler, a registry that does not answer) is cut off, so Run
// returns within the grace period plus a moment.
//
// Run returns nil after an orderly shutdown, and an error when the options
// are invalid, a before-start hook fails, or listening or the first
// registration fails. A service runs once.
func (s *Service) Run() error {
	if err := s.validate(); err != nil {
		return err
	}
	s.Server()
	if s.srvErr != nil {
		return s.srvErr
	}
	reg, err := s.registry()
	if err != nil {
		return err
	}
	s.mu.Lock()
	switch {
	case s.closed:
		s.mu.Unlock()
		return ErrClosed
	case s.running:
		s.mu.Unlock()
		return ErrAlreadyRunning
	}
	s.running = true
	s.mu.Unlock()
	defer func() {
		// A server that served is stopped already (a second Stop does
		// nothing); one that never served, as Run failed first, still has
		// its stream workers.
		if s.ownsServer() {
			s.server.Stop()
		}
		s.Close()
	}()

	ctx := s.opts.ctx
	if s.opts.signal {
		var stop context.CancelFunc
		ctx, stop = signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
		defer stop()
	}
	log := s.opts.logger.With("service", s.opts.name, "id", s.ID())

	for _, h := range s.opts.beforeStart {
		if err := h(ctx); err != nil {
			return fmt.Errorf("micro: before-start hook: %w", err)
		}
	}
	lis := s.opts.listener
	if lis == nil {
		if lis, err = net.Listen("tcp", s.opts.address); err != nil {
			return fmt.Errorf("micro: listen on %q: %w", s.opts.address, err)
		}
	}
	advertised, err := addr.Advertise(s.opts.advertise, lis.Addr())
	if err != nil {
		lis.Close()
		return err
	}
	s.mu.Lock()
	s.address = advertised
	s.mu.Unlock()

	s.installStandardServices()
	serveErr := make(chan error, 1)
	go func() { serveErr <- s.server.Serve(lis) }()

	rg := &registration{svc: s, reg: reg, addr: advertised}
	if err := rg.first(ctx); err != nil {
		s.server.Stop()
		<-serveErr
		return err
	}
	if err := s.startParts(ctx); err != nil {
		s.stopParts(context.WithoutCancel(ctx))
		rg.deregister(context.WithoutCancel(ctx))
		s.server.Stop()
		<-serveErr
		return err
	}
	log.Info("micro: service started", "address", advertised, "registry", reg.String())
	for _, h := range s.opts.afterStart {
		if err := h(ctx); err != nil {
			log.Error("micro: after-start hook failed", "error", err)
		}
	}

	hbCtx, hbCancel := context.WithCancel(context.Background())
	var hbWG sync.WaitGroup
	hbWG.Add(1)
	go func() {
		defer hbWG.Done()
		rg.heartbeat(hbCtx)
	}()

	var runErr error
	select {
	case <-ctx.Done():
		log.Info("micro: shutting down", "cause", context.Cause(ctx))
	case err := <-serveErr:
		// The server died under us; still deregister and clean up.
		runErr = fmt.Errorf("micro: serve: %w", err)
		serveErr <- nil
	}

	// One deadline for the whole stop sequence, as http.Server.Shutdown
	// takes one ctx: the grace period is what an orchestrator allows
	// between SIGTERM and SIGKILL. Calls in flight keep running while
	// the node deregisters, so no step needs a budget of its own; what is
	// still running at the deadline is stopped hard.
	stopCtx, cancelStop := context.WithTimeout(context.WithoutCancel(ctx), s.opts.grace)
	defer cancelStop()
	for _, h := range s.opts.beforeStop {
		if err := h(stopCtx); err != nil {
			log.Error("micro: before-stop hook failed", "error", err)
		}
	}
	if s.health != nil {
		s.health.Shutdown()
	}
	hbCancel()
	hbWG.Wait()
	rg.deregister(stopCtx)
	backoff.Sleep(stopCtx, s.opts.deregisterWait, nil)
	if s.health != nil {
		// Watchers were told NOT_SERVING; holding their streams open would
		// make the graceful stop wait out the grace period.
		s.health.endWatches()
	}
	// Parts (subscriptions) drain while the server finishes its calls.
	var drained sync.WaitGroup
	drained.Go(func() { s.stopParts(stopCtx) })
	s.gracefulStop(stopCtx)
	drained.Wait()
	waitAtMost(serveErr, hardStopWait)
	s.closeWithin(stopCtx)
	for _, h := range s.opts.afterStop {
		if err := h(stopCtx); err != nil {
			log.Error("micro: after-stop hook failed", "error", err)
		}
	}
	log.Info("micro: service stopped")
	return runErr
}

// gracefulStop lets in-flight calls finish until ctx ends, then stops the
// server hard.
func (s *Service) gracefulStop(ctx context.Context) {
	done := make(chan struct{})
	go func() {
		s.server.GracefulStop()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		s.opts.logger.Warn("micro: grace period over, stopping hard", "service", s.opts.name, "grace", s.opts.grace)
		s.server.Stop()
		// Stop cancels the calls' contexts; a handler that ignores its
		// context keeps its connection, and GracefulStop, waiting for ever.
		// Nothing can stop such a goroutine: stop waiting for it.
		if !waitAtMost(done, hardStopWait) {
			s.opts.logger.Error("micro: handlers still running after the hard stop; not waiting for them", "service", s.opts.name)
		}
	}
}

// hardStopWait is how long a hard stop waits for handlers to notice that
// their calls were cancelled.
const hardStopWait = 200 * time.Millisecond

// waitAtMost waits for c to yield (or close) for at most d, and reports
// whether it did.
func waitAtMost[T any](c <-chan T, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-c:
		return true
	case <-t.C:
		return false
	}
}

// Close closes the connections made by Dial and, when the service made
// them, its broker (waiting up to the grace period for its handlers) and
// its registry. Run calls it on the way out; a service used only as a
// client calls it when done. It is idempotent.
func (s *Service) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.grace)
	defer cancel()
	return s.closeWithin(ctx)
}

// closeWithin is Close with the broker's drain bounded by ctx.
func (s *Service) closeWithin(ctx context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	conns := s.conns
	s.conns = nil
	// A server this service made for a Run that never came (handlers were
	// registered, then the program gave up) still has its stream workers.
	idle := s.server != nil && s.ownsServer() && !s.running
	s.mu.Unlock()
	if idle {
		s.server.Stop()
	}
	s.stopParts(ctx)
	var errs []error
	for _, cc := range conns {
		errs = append(errs, cc.Close())
	}
	if s.brk != nil && s.ownsBroker {
		errs = append(errs, s.brk.Disconnect(ctx))
	}
	if c, ok := s.reg.(io.Closer); ok && s.ownsRegistry {
		errs = append(errs, c.Close())
	}
	return errors.Join(errs...)
}

// registration keeps the node registered while the service runs.
type registration struct {
	svc        *Service
	reg        resolver.Registry
	addr       string
	registered bool
}

func (r *registration) service() *resolver.Service {
	s := r.svc
	s.mu.Lock()
	md := maps.Clone(s.opts.metadata)
	if len(s.extraMD) > 0 {
		if md == nil {
			md = map[string]string{}
		}
		maps.Copy(md, s.extraMD)
	}
	s.mu.Unlock()
	node := resolver.Node{ID: s.ID(), Address: r.addr, Metadata: md}
	if s.health != nil {
		// Our health service answers for the service's name (server.go):
		// clients wait for SERVING under it, so a record of ours that
		// outlives the node and points at another server gets no calls.
		// A server that kept its own health service may not know the name.
		node.HealthService = s.opts.name
	}
	return &resolver.Service{
		Name:      s.opts.name,
		Version:   s.opts.version,
		Endpoints: endpoints(s.server),
		Nodes:     []resolver.Node{node},
	}
}

// first performs the initial registration. A failing register check only
// holds registration back; a failing registry is an error.
func (r *registration) first(ctx context.Context) error {
	if err := r.check(ctx); err != nil {
		r.svc.opts.logger.Warn("micro: register check failed, not registering yet",
			"service", r.svc.opts.name, "error", err)
		return nil
	}
	if err := r.register(ctx); err != nil {
		return fmt.Errorf("micro: register %q in %s: %w", r.svc.opts.name, r.reg, err)
	}
	return nil
}

func (r *registration) check(ctx context.Context) error {
	if r.svc.opts.registerCheck == nil {
		return nil
	}
	return r.svc.opts.registerCheck(ctx)
}

func (r *registration) register(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, registryCallTimeout)
	defer cancel()
	if err := r.reg.Register(ctx, r.service(), resolver.WithTTL(r.svc.opts.registerTTL)); err != nil {
		return err
	}
	r.registered = true
	return nil
}

const registryCallTimeout = 10 * time.Second

// heartbeat re-registers every interval (and at once when metadata
// changes), taking the node out while the register check fails.
func (r *registration) heartbeat(ctx context.Context) {
	log := r.svc.opts.logger.With("service", r.svc.opts.name, "id", r.svc.ID())
	interval := r.svc.opts.registerInterval
	if interval <= 0 {
		<-ctx.Done()
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-r.svc.metaWake:
		}
		if err := r.check(ctx); err != nil {
			log.Warn("micro: register check failed", "error", err, "registered", r.registered)
			if r.registered {
				r.deregister(ctx)
			}
			continue
		}
		if err := r.register(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			log.Warn("micro: re-register failed", "error", err)
		}
	}
}

func (r *registration) deregister(ctx context.Context) {
	if !r.registered {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, registryCallTimeout)
	defer cancel()
	if err := r.reg.Deregister(ctx, r.service()); err != nil {
		r.svc.opts.logger.Warn("micro: deregister failed", "service", r.svc.opts.name, "error", err)
		return
	}
	r.registered = false
}
