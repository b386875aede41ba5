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
	"github.com/microgrpc/microgrpc/resolver/internal/eventq"
)

// Name is the name of this registry, and its default gRPC scheme.
const Name = "memory"

// NewRegistry returns an empty in-memory registry.
func NewRegistry() resolver.Registry {
	return &registry{services: map[string]map[string]*record{}}
}

type record struct {
	svc   *resolver.Service // Nodes holds exactly this node
	timer *time.Timer       // TTL expiry, nil without TTL
	gen   uint64            // guards against a stale timer firing after a refresh
}

type registry struct {
	mu       sync.Mutex
	services map[string]map[string]*record // service name -> node id -> record
	watchers eventq.Set                    // Notify under mu, for one event order
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
	var svcs []*resolver.Service
	for _, rec := range nodes {
		svcs = append(svcs, rec.svc)
	}
	return resolver.GroupByVersion(svcs), nil
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
	// The set adds the watcher before ctx can stop it, so that a context
	// ending meanwhile cannot leave a stopped watcher registered.
	return r.watchers.Watch(ctx, resolver.NewWatchOptions(opts...).Service), nil
}

// notifyLocked queues an event for every interested watcher. Queues are
// unbounded so that a slow watcher never blocks the registry. Caller must
// hold r.mu, so that watchers see the changes in the order they were made.
func (r *registry) notifyLocked(a resolver.Action, s *resolver.Service) {
	r.watchers.Notify(a, s)
}
