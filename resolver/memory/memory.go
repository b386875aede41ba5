// Package memory is an in-process [resolver.Registry]: nodes live in a map,
// expire when their TTL passes without a refresh, and every change is sent to
// the registry's watchers. It is meant for tests and for programs whose
// clients and servers share one process; pass the same Registry to every
// micro.Service that should see the others.
//
// Expiry runs on timers (time.AfterFunc), so an idle registry owns no
// goroutine and needs no Close.
package memory

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/microgrpc/microgrpc/resolver"
)

// Name is the name of this registry, and its default gRPC scheme.
const Name = "memory"

// NewRegistry returns an empty in-memory registry.
func NewRegistry() resolver.Registry {
	return &registry{services: map[string]map[string]*record{}, watchers: map[*watcher]struct{}{}}
}

type record struct {
	svc   *resolver.Service // Nodes holds exactly this node
	timer *time.Timer       // TTL expiry, nil without TTL
	gen   uint64            // guards against a stale timer firing after a refresh
}

type registry struct {
	mu       sync.Mutex
	services map[string]map[string]*record // service name -> node id -> record
	watchers map[*watcher]struct{}
	gen      uint64
}

func (r *registry) String() string { return Name }

func (r *registry) Register(ctx context.Context, s *resolver.Service, opts ...resolver.RegisterOption) error {
	if err := s.Validate(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	o := resolver.NewRegisterOptions(opts...)
	r.mu.Lock()
	defer r.mu.Unlock()
	nodes := r.services[s.Name]
	if nodes == nil {
		nodes = map[string]*record{}
		r.services[s.Name] = nodes
	}
	for _, n := range s.Nodes {
		one := s.Clone()
		one.Nodes = []resolver.Node{n}
		one.Nodes[0].Metadata = maps.Clone(n.Metadata)
		action := resolver.Create
		if old, ok := nodes[n.ID]; ok {
			action = resolver.Update
			if old.timer != nil {
				old.timer.Stop()
			}
		}
		r.gen++
		rec := &record{svc: one, gen: r.gen}
		if o.TTL > 0 {
			name, id, gen := s.Name, n.ID, rec.gen
			rec.timer = time.AfterFunc(o.TTL, func() { r.expire(name, id, gen) })
		}
		nodes[n.ID] = rec
		r.notifyLocked(action, one)
	}
	return nil
}

func (r *registry) expire(name, id string, gen uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	rec, ok := r.services[name][id]
	if !ok || rec.gen != gen {
		return // refreshed or removed since this timer was set
	}
	r.removeLocked(name, id)
}

func (r *registry) Deregister(ctx context.Context, s *resolver.Service) error {
	if s == nil {
		return fmt.Errorf("%w: nil service", resolver.ErrInvalidService)
	}
	if err := resolver.ValidateName(s.Name); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, n := range s.Nodes {
		r.removeLocked(s.Name, n.ID)
	}
	return nil
}

// removeLocked deletes one node and tells the watchers. Caller must hold r.mu.
func (r *registry) removeLocked(name, id string) {
	rec, ok := r.services[name][id]
	if !ok {
		return
	}
	if rec.timer != nil {
		rec.timer.Stop()
	}
	delete(r.services[name], id)
	if len(r.services[name]) == 0 {
		delete(r.services, name)
	}
	r.notifyLocked(resolver.Delete, rec.svc)
}

func (r *registry) GetService(ctx context.Context, name string) ([]*resolver.Service, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	nodes := r.services[name]
	if len(nodes) == 0 {
		return nil, fmt.Errorf("%w: %q in memory registry", resolver.ErrNotFound, name)
	}
	byVersion := map[string]*resolver.Service{}
	for _, rec := range nodes {
		s, ok := byVersion[rec.svc.Version]
		if !ok {
			s = rec.svc.Clone()
			s.Nodes = nil
			byVersion[rec.svc.Version] = s
		}
		s.Nodes = append(s.Nodes, rec.svc.Clone().Nodes[0])
	}
	out := make([]*resolver.Service, 0, len(byVersion))
	for _, v := range slices.Sorted(maps.Keys(byVersion)) {
		resolver.SortNodes(byVersion[v].Nodes)
		out = append(out, byVersion[v])
	}
	return out, nil
}

func (r *registry) ListServices(ctx context.Context) ([]*resolver.Service, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	r.mu.Lock()
	names := slices.Sorted(maps.Keys(r.services))
	r.mu.Unlock()
	var out []*resolver.Service
	for _, n := range names {
		svcs, err := r.GetService(ctx, n)
		if err != nil {
			continue // expired in between
		}
		out = append(out, svcs...)
	}
	slices.SortFunc(out, func(a, b *resolver.Service) int {
		return strings.Compare(a.Name+"\x00"+a.Version, b.Name+"\x00"+b.Version)
	})
	return out, nil
}

func (r *registry) Watch(ctx context.Context, opts ...resolver.WatchOption) (resolver.Watcher, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	o := resolver.NewWatchOptions(opts...)
	w := &watcher{reg: r, service: o.Service, wake: make(chan struct{}, 1), done: make(chan struct{})}
	r.mu.Lock()
	r.watchers[w] = struct{}{}
	r.mu.Unlock()
	stop := context.AfterFunc(ctx, w.Stop)
	w.mu.Lock()
	w.stopCtx = stop
	w.mu.Unlock()
	return w, nil
}

// notifyLocked queues an event for every interested watcher. Queues are
// unbounded so that a slow watcher never blocks the registry. Caller must
// hold r.mu.
func (r *registry) notifyLocked(a resolver.Action, s *resolver.Service) {
	for w := range r.watchers {
		if w.service != "" && w.service != s.Name {
			continue
		}
		w.push(&resolver.Event{Action: a, Service: s.Clone(), Timestamp: time.Now()})
	}
}

type watcher struct {
	reg     *registry
	service string

	mu      sync.Mutex
	queue   []*resolver.Event
	stopCtx func() bool
	wake    chan struct{}

	once sync.Once
	done chan struct{}
}

func (w *watcher) push(ev *resolver.Event) {
	w.mu.Lock()
	w.queue = append(w.queue, ev)
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func (w *watcher) Next() (*resolver.Event, error) {
	for {
		select {
		case <-w.done:
			return nil, resolver.ErrWatcherStopped
		default:
		}
		w.mu.Lock()
		if len(w.queue) > 0 {
			ev := w.queue[0]
			w.queue[0] = nil
			w.queue = w.queue[1:]
			w.mu.Unlock()
			return ev, nil
		}
		w.mu.Unlock()
		select {
		case <-w.wake:
		case <-w.done:
			return nil, resolver.ErrWatcherStopped
		}
	}
}

func (w *watcher) Stop() {
	w.once.Do(func() {
		close(w.done)
		w.mu.Lock()
		stop := w.stopCtx
		w.mu.Unlock()
		if stop != nil {
			stop()
		}
		w.reg.mu.Lock()
		delete(w.reg.watchers, w)
		w.reg.mu.Unlock()
	})
}
