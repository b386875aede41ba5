package resolver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	grpcresolver "google.golang.org/grpc/resolver"
	"google.golang.org/grpc/status"
)

// NewBuilder returns a gRPC resolver builder that resolves
// "<scheme>:///<service>" through reg. Pass it to a single channel with
// grpc.WithResolvers (preferred: no global state), or register it for the
// whole process with grpcresolver.Register.
func NewBuilder(reg Registry, opts ...BuilderOption) grpcresolver.Builder {
	o := defaultBuilderOptions(reg)
	for _, opt := range opts {
		opt(&o)
	}
	return &builder{reg: reg, opts: o}
}

type builder struct {
	reg  Registry
	opts builderOptions
}

var _ grpcresolver.Builder = (*builder)(nil)

func (b *builder) Scheme() string { return b.opts.scheme }

// ServiceFromTarget returns the service name of a "<scheme>:///<service>"
// target, or an InvalidArgument status error when the target does not name
// exactly one valid service.
func ServiceFromTarget(t grpcresolver.Target) (string, error) {
	name := strings.TrimPrefix(t.Endpoint(), "/")
	if err := ValidateName(name); err != nil {
		return "", status.Errorf(codes.InvalidArgument, "resolver: target %q: %v", t.String(), err)
	}
	return name, nil
}

func (b *builder) Build(t grpcresolver.Target, cc grpcresolver.ClientConn, _ grpcresolver.BuildOptions) (grpcresolver.Resolver, error) {
	name, err := ServiceFromTarget(t)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &registryResolver{
		reg:     b.reg,
		opts:    b.opts,
		service: name,
		cc:      cc,
		cancel:  cancel,
		now:     make(chan struct{}, 1),
	}
	r.wg.Add(1)
	go r.run(ctx)
	return r, nil
}

// registryResolver follows one service in a Registry. All its state is owned
// by the run goroutine; ResolveNow and Close only signal it.
type registryResolver struct {
	reg     Registry
	opts    builderOptions
	service string
	cc      grpcresolver.ClientConn
	cancel  context.CancelFunc
	now     chan struct{}
	// wg tracks run (and the watch reader it starts), so that Close never
	// returns while a goroutine can still call cc, which grpc-go forbids.
	wg sync.WaitGroup
}

// ResolveNow asks for an immediate retry when the registry is failing; while
// the watch is healthy it has nothing to do, since changes are pushed.
func (r *registryResolver) ResolveNow(grpcresolver.ResolveNowOptions) {
	select {
	case r.now <- struct{}{}:
	default:
	}
}

func (r *registryResolver) Close() {
	r.cancel()
	r.wg.Wait()
}

type nodeEntry struct {
	node    Node
	version string
	svcMeta map[string]string
}

// runState is the run goroutine's private state.
type runState struct {
	nodes map[string]nodeEntry
	// pushed is true while the channel holds a non-empty node list from us.
	pushed bool
	// degradeTimer runs while the registry fails or the list is empty;
	// when it fires, degradeWhy is reported.
	degradeTimer *time.Timer
	degradeWhy   error
	// reported is true once an error has been reported to the channel.
	reported bool
}

func (r *registryResolver) run(ctx context.Context) {
	defer r.wg.Done()
	st := &runState{nodes: map[string]nodeEntry{}}
	defer st.stopDegradeTimer()
	attempt := 0
	healthy := func() {
		if attempt > 0 {
			r.opts.logger.Info("microgrpc resolver: registry recovered",
				"service", r.service, "registry", r.reg.String(), "failed_attempts", attempt)
		}
		attempt = 0
	}
	for ctx.Err() == nil {
		err := r.watchOnce(ctx, st, healthy)
		if ctx.Err() != nil {
			return
		}
		r.degrade(st, fmt.Errorf("registry %s failed while resolving service %q: %w", r.reg, r.service, err))
		delay := r.backoff(attempt)
		attempt++
		// Log the first failure loudly and the retries quietly: an outage
		// would otherwise flood the log.
		level := slog.LevelDebug
		if attempt == 1 {
			level = slog.LevelWarn
		}
		r.opts.logger.Log(ctx, level, "microgrpc resolver: registry error, retrying",
			"service", r.service, "registry", r.reg.String(), "error", err, "retry_in", delay, "attempt", attempt)
		if !r.sleep(ctx, st, delay) {
			return
		}
	}
}

// sleep waits d, an early ResolveNow, or ctx, and fires the degrade timer if
// it expires meanwhile. It reports false when ctx is done.
func (r *registryResolver) sleep(ctx context.Context, st *runState, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
			return true
		case <-r.now:
			return true
		case <-st.degradeC():
			r.giveUp(st)
		}
	}
}

func (r *registryResolver) backoff(attempt int) time.Duration {
	d := float64(r.opts.minBackoff)
	for i := 0; i < attempt && d < float64(r.opts.maxBackoff); i++ {
		d *= 1.6
	}
	d = min(d, float64(r.opts.maxBackoff))
	// ±20% jitter so that many clients do not retry in step.
	d *= 0.8 + 0.4*rand.Float64()
	return time.Duration(d)
}

// watchOnce watches the service and lists it, then applies events until the
// watch fails; it returns that failure. healthy is called once the initial
// list succeeded.
func (r *registryResolver) watchOnce(ctx context.Context, st *runState, healthy func()) error {
	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	// Watch before listing: an event that races with the list is then
	// applied again, which is harmless, instead of being lost.
	w, err := r.reg.Watch(wctx, WatchService(r.service))
	if err != nil {
		return fmt.Errorf("watch: %w", err)
	}
	events := make(chan *Event)
	werr := make(chan error, 1)
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		for {
			ev, err := w.Next()
			if err != nil {
				werr <- err
				return
			}
			select {
			case events <- ev:
			case <-wctx.Done():
				return
			}
		}
	}()
	defer w.Stop()

	svcs, err := r.reg.GetService(ctx, r.service)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return fmt.Errorf("get service: %w", err)
	}
	clear(st.nodes)
	for _, s := range svcs {
		st.apply(&Event{Action: Create, Service: s})
	}
	healthy()
	r.publish(st)

	var coalesce *time.Timer
	var coalesceC <-chan time.Time
	defer func() {
		if coalesce != nil {
			coalesce.Stop()
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-werr:
			if ctx.Err() == nil && err == nil {
				err = errors.New("watch ended")
			}
			return fmt.Errorf("watch: %w", err)
		case ev := <-events:
			if ev == nil || ev.Service == nil || ev.Service.Name != r.service {
				continue
			}
			st.apply(ev)
			if coalesceC == nil {
				if r.opts.coalesce <= 0 {
					r.publish(st)
					continue
				}
				coalesce = time.NewTimer(r.opts.coalesce)
				coalesceC = coalesce.C
			}
		case <-coalesceC:
			coalesceC = nil
			r.publish(st)
		case <-r.now:
			// Healthy watch: nothing to refresh.
		case <-st.degradeC():
			r.giveUp(st)
		}
	}
}

func (st *runState) apply(ev *Event) {
	for _, n := range ev.Service.Nodes {
		if ev.Action == Delete {
			delete(st.nodes, n.ID)
			continue
		}
		st.nodes[n.ID] = nodeEntry{node: n, version: ev.Service.Version, svcMeta: ev.Service.Metadata}
	}
}

func (st *runState) degradeC() <-chan time.Time {
	if st.degradeTimer == nil {
		return nil
	}
	return st.degradeTimer.C
}

func (st *runState) stopDegradeTimer() {
	if st.degradeTimer != nil {
		st.degradeTimer.Stop()
		st.degradeTimer = nil
	}
	st.degradeWhy = nil
}

// publish pushes the current node list, or starts the grace period when it
// is empty.
func (r *registryResolver) publish(st *runState) {
	if len(st.nodes) == 0 {
		r.degrade(st, fmt.Errorf("no nodes of service %q are registered in registry %s", r.service, r.reg))
		return
	}
	st.stopDegradeTimer()
	state := r.state(st)
	st.pushed = true
	if err := r.cc.UpdateState(state); err != nil {
		r.opts.logger.Warn("microgrpc resolver: channel rejected the node list", "service", r.service, "error", err)
	}
}

// degrade starts the grace period for why, or reports it at once when there
// is no good list to keep or no grace period.
func (r *registryResolver) degrade(st *runState, why error) {
	st.degradeWhy = why
	wait := r.opts.grace
	if !st.pushed {
		// Nothing to keep. Before the first report, wait a little anyway:
		// discovery (mdns above all) may need a moment to find the first
		// nodes, and calls block rather than fail until we report.
		wait = 0
		if !st.reported {
			wait = r.opts.initial
		}
	}
	if wait <= 0 {
		r.giveUp(st)
		return
	}
	if st.degradeTimer == nil {
		st.degradeTimer = time.NewTimer(wait)
	}
}

// giveUp reports st.degradeWhy to the channel. When the reason is an empty
// node list the list is dropped too; a failing registry only reports, and
// the balancer keeps using connections it already has, so a registry outage
// does not take down a fleet that is still serving.
func (r *registryResolver) giveUp(st *runState) {
	why := st.degradeWhy
	if st.degradeTimer != nil {
		st.degradeTimer.Stop()
		st.degradeTimer = nil
	}
	if why == nil {
		return
	}
	if len(st.nodes) == 0 && st.pushed {
		st.pushed = false
		_ = r.cc.UpdateState(grpcresolver.State{})
	}
	if st.pushed {
		why = fmt.Errorf("%w (still using the %d nodes known before)", why, len(st.nodes))
	}
	st.reported = true
	r.cc.ReportError(why)
}

// state converts the node map to a resolver state: one endpoint per node,
// sorted by node id, and the same addresses in the legacy Addresses field.
func (r *registryResolver) state(st *runState) grpcresolver.State {
	ids := slices.Sorted(maps.Keys(st.nodes))
	eps := make([]grpcresolver.Endpoint, 0, len(ids))
	addrs := make([]grpcresolver.Address, 0, len(ids))
	for _, id := range ids {
		e := st.nodes[id]
		info := &NodeInfo{ID: id, Service: r.service, Version: e.version, Metadata: mergeMeta(e.svcMeta, e.node.Metadata), HealthService: e.node.HealthService}
		addr := grpcresolver.Address{Addr: e.node.Address}
		if e.node.HealthService != "" {
			addr.Attributes = addr.Attributes.WithValue(healthCheckKey{}, HealthCheck{NodeID: id, Service: e.node.HealthService})
		}
		//lint:ignore SA1019 for balancer/base policies, which see only State.Addresses (see NodeFromAddress).
		addr.BalancerAttributes = addr.BalancerAttributes.WithValue(nodeInfoKey{}, info)
		eps = append(eps, SetNodeInfo(grpcresolver.Endpoint{Addresses: []grpcresolver.Address{addr}}, info))
		addrs = append(addrs, addr)
	}
	return grpcresolver.State{Endpoints: eps, Addresses: addrs}
}

func mergeMeta(svc, node map[string]string) map[string]string {
	if len(svc) == 0 {
		return node
	}
	m := maps.Clone(svc)
	maps.Copy(m, node)
	return m
}
