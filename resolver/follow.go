package resolver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/microgrpc/microgrpc/internal/backoff"
)

// A Follower keeps the current nodes of one service of a Registry: it
// watches the service, lists it, applies the watch's events, and after
// any failure lists and watches again, backing off. It is the one
// registry-watching loop of microgrpc: the gRPC resolver of [NewBuilder]
// and the http broker's subscriber cache both run on it.
//
// Make one with [Follow] and end it with Stop, or its goroutine leaks.
// Its methods are safe for concurrent use.
type Follower struct {
	reg     Registry
	service string
	opts    builderOptions
	cancel  context.CancelFunc
	wake    chan struct{} // buffer 1: RetryNow
	changed chan struct{} // buffer 1: Changed
	ready   chan struct{} // closed after the first listing attempt
	stopped chan struct{} // closed by Stop
	stop    sync.Once
	// wg tracks the loop and its watch reader: Stop returns only when
	// neither can call into the registry any more.
	wg sync.WaitGroup

	mu       sync.Mutex
	nodes    map[string]nodeEntry // by node id
	sorted   []Node               // Nodes' answer until the nodes change; nil: to be made
	err      error                // the current failure; nil while the watch is healthy
	firstErr error                // the first listing's failure, for Ready
	listings int                  // successful listings so far
}

type nodeEntry struct {
	node    Node
	version string
	svcMeta map[string]string
}

// Follow starts following service in reg. Of the options, WithBackoff
// (retry delays after a failure) and WithLogger (failures and recoveries)
// apply; the others are the resolver's.
func Follow(reg Registry, service string, opts ...BuilderOption) *Follower {
	o := defaultBuilderOptions(reg)
	for _, opt := range opts {
		opt(&o)
	}
	ctx, cancel := context.WithCancel(context.Background())
	f := &Follower{
		reg: reg, service: service, opts: o, cancel: cancel,
		wake: make(chan struct{}, 1), changed: make(chan struct{}, 1), ready: make(chan struct{}),
		stopped: make(chan struct{}), nodes: map[string]nodeEntry{},
	}
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		f.run(ctx)
	}()
	return f
}

// Stop ends the follower and waits for its goroutines. It is idempotent.
func (f *Follower) Stop() {
	f.stop.Do(func() { close(f.stopped) })
	f.cancel()
	f.wg.Wait()
}

// ErrFollowerStopped is Ready's error once Stop was called before the
// first listing came back.
var ErrFollowerStopped = errors.New("resolver: follower stopped")

// Ready waits for the first listing and returns its error (nil when it
// succeeded), or ctx's, or ErrFollowerStopped when the follower is
// stopped first. After a failed first listing the follower keeps trying
// in the background.
func (f *Follower) Ready(ctx context.Context) error {
	select {
	case <-f.ready:
		f.mu.Lock()
		defer f.mu.Unlock()
		return f.firstErr
	case <-f.stopped:
		select {
		case <-f.ready: // both: the listing came first
			f.mu.Lock()
			defer f.mu.Unlock()
			return f.firstErr
		default:
		}
		return ErrFollowerStopped
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Changed yields after every change of the nodes or of Err: a listing, an
// event, a failure. Changes that happen before the receiver looks are
// merged into one.
func (f *Follower) Changed() <-chan struct{} { return f.changed }

// Err returns the current failure of the registry, or nil while the watch
// is healthy. The nodes known before a failure are kept meanwhile.
func (f *Follower) Err() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}

// Nodes returns the service's current nodes, sorted by id. The slice is
// shared by every caller until the nodes change: read it, never modify it
// (a caller that does must copy it first).
func (f *Follower) Nodes() []Node {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.sorted == nil {
		out := make([]Node, 0, len(f.nodes))
		for _, id := range slices.Sorted(maps.Keys(f.nodes)) {
			out = append(out, f.nodes[id].node)
		}
		f.sorted = out
	}
	return f.sorted
}

// Services returns the service's current nodes grouped by version, as
// GetService does: one Service per version (sorted by version, nodes by
// id), with the metadata its nodes registered. Endpoints are not kept.
func (f *Follower) Services() []*Service {
	f.mu.Lock()
	defer f.mu.Unlock()
	byVersion := map[string]*Service{}
	for _, id := range slices.Sorted(maps.Keys(f.nodes)) {
		e := f.nodes[id]
		s := byVersion[e.version]
		if s == nil {
			s = &Service{Name: f.service, Version: e.version, Metadata: maps.Clone(e.svcMeta)}
			byVersion[e.version] = s
		}
		n := e.node
		n.Metadata = maps.Clone(n.Metadata)
		s.Nodes = append(s.Nodes, n)
	}
	out := make([]*Service, 0, len(byVersion))
	for _, v := range slices.Sorted(maps.Keys(byVersion)) {
		out = append(out, byVersion[v])
	}
	return out
}

// RetryNow cuts short the wait before the next attempt while the registry
// fails; while the watch is healthy it does nothing.
func (f *Follower) RetryNow() {
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

// snapshot returns a copy of the entries and the number of listings.
func (f *Follower) snapshot() (map[string]nodeEntry, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return maps.Clone(f.nodes), f.listings
}

func (f *Follower) signal() {
	select {
	case f.changed <- struct{}{}:
	default:
	}
}

func (f *Follower) run(ctx context.Context) {
	attempt := 0
	policy := backoff.Policy{Min: f.opts.minBackoff, Max: f.opts.maxBackoff}
	for ctx.Err() == nil {
		err := f.watchOnce(ctx, func() {
			if attempt > 0 {
				f.opts.logger.Info("microgrpc: registry recovered",
					"service", f.service, "registry", f.reg.String(), "failed_attempts", attempt)
			}
			attempt = 0
		})
		if ctx.Err() != nil {
			return
		}
		f.mu.Lock()
		f.err = err
		first := f.listings == 0 && f.firstErr == nil
		if first {
			f.firstErr = err
		}
		f.mu.Unlock()
		if first {
			close(f.ready)
		}
		f.signal()
		delay := policy.Delay(attempt)
		attempt++
		// Log the first failure loudly and the retries quietly: an outage
		// would otherwise flood the log.
		level := slog.LevelDebug
		if attempt == 1 {
			level = slog.LevelWarn
		}
		f.opts.logger.Log(ctx, level, "microgrpc: registry error, retrying",
			"service", f.service, "registry", f.reg.String(), "error", err, "retry_in", delay, "attempt", attempt)
		if !backoff.Sleep(ctx, delay, f.wake) {
			return
		}
	}
}

// watchOnce watches the service and lists it, then applies events until
// the watch fails; it returns that failure. healthy runs once the listing
// succeeded.
func (f *Follower) watchOnce(ctx context.Context, healthy func()) error {
	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	svcs, w, err := f.listWatch(wctx)
	if err != nil {
		return err
	}
	defer w.Stop()
	events := make(chan *Event)
	werr := make(chan error, 1)
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
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

	f.mu.Lock()
	clear(f.nodes)
	f.sorted = nil
	for _, s := range svcs {
		f.applyLocked(&Event{Action: Create, Service: s})
	}
	f.err = nil
	f.listings++
	first := f.listings == 1 && f.firstErr == nil
	f.mu.Unlock()
	if first {
		close(f.ready)
	}
	healthy()
	f.signal()

	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-werr:
			if err == nil {
				err = errors.New("watch ended")
			}
			return fmt.Errorf("watch: %w", err)
		case ev := <-events:
			if ev == nil || ev.Service == nil || ev.Service.Name != f.service {
				continue
			}
			f.mu.Lock()
			f.applyLocked(ev)
			f.mu.Unlock()
			f.signal()
		}
	}
}

// listWatch lists the service and watches it from there: in one read when
// the registry is a ListWatcher, else by Watch then GetService. Watching
// before listing means an event that races with the list is applied
// again, which is harmless, instead of being lost.
func (f *Follower) listWatch(ctx context.Context) ([]*Service, Watcher, error) {
	lctx, lcancel := context.WithTimeout(ctx, listTimeout)
	defer lcancel()
	if lw, ok := f.reg.(ListWatcher); ok {
		// The watcher lives on ctx; only the listing is bounded.
		svcs, w, err := lw.ListWatch(ctx, f.service)
		if err != nil {
			return nil, nil, fmt.Errorf("list and watch: %w", err)
		}
		return svcs, w, nil
	}
	w, err := f.reg.Watch(ctx, WatchService(f.service))
	if err != nil {
		return nil, nil, fmt.Errorf("watch: %w", err)
	}
	svcs, err := f.reg.GetService(lctx, f.service)
	if err != nil && !errors.Is(err, ErrNotFound) {
		w.Stop()
		return nil, nil, fmt.Errorf("get service: %w", err)
	}
	return svcs, w, nil
}

// listTimeout bounds one listing, so that a registry that never answers
// is retried rather than waited on for ever.
const listTimeout = 15 * time.Second // registries bound their own reads sooner

// applyLocked applies one event. Caller must hold f.mu.
func (f *Follower) applyLocked(ev *Event) {
	f.sorted = nil
	for _, n := range ev.Service.Nodes {
		if ev.Action == Delete {
			delete(f.nodes, n.ID)
			continue
		}
		f.nodes[n.ID] = nodeEntry{node: n, version: ev.Service.Version, svcMeta: ev.Service.Metadata}
	}
}
