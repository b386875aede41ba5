// Package eventq is the unbounded event queue behind the registries'
// watchers: a registry pushes without ever blocking on a slow watcher, and
// the watcher's Next pops in order. Set keeps a registry's watchers, and
// owns adding and removing them.
package eventq

import (
	"context"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/microgrpc/microgrpc/resolver"
)

// Queue is safe for one producer side and one consumer at a time.
type Queue struct {
	mu    sync.Mutex
	items []*resolver.Event
	wake  chan struct{}
}

// New returns an empty queue.
func New() *Queue { return &Queue{wake: make(chan struct{}, 1)} }

// Push appends ev; it never blocks.
func (q *Queue) Push(ev *resolver.Event) {
	q.mu.Lock()
	q.items = append(q.items, ev)
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// Next pops the oldest event, waiting for one; it returns
// resolver.ErrWatcherStopped once done is closed.
func (q *Queue) Next(done <-chan struct{}) (*resolver.Event, error) {
	for {
		select {
		case <-done:
			return nil, resolver.ErrWatcherStopped
		default:
		}
		q.mu.Lock()
		if len(q.items) > 0 {
			ev := q.items[0]
			q.items[0] = nil
			q.items = q.items[1:]
			q.mu.Unlock()
			return ev, nil
		}
		q.mu.Unlock()
		select {
		case <-q.wake:
		case <-done:
			return nil, resolver.ErrWatcherStopped
		}
	}
}

// Set is a registry's watchers, each with the service it follows. It owns
// their registration and removal under one lock, and adds a watcher before
// anything can stop it: a stop, explicit or by a context that ends at any
// moment, then always finds its watcher to remove, and no stopped watcher
// stays behind collecting events that no one reads.
//
// The zero Set is empty and ready to use. Lock order: a registry may call
// Notify holding its own lock; Set never calls out while holding its lock.
type Set struct {
	mu       sync.Mutex
	closed   bool
	watchers map[*Watcher]struct{}
}

// Watch adds a watcher of service ("" for every service). It stops when
// its Stop is called, when ctx ends, or when the set is closed; a watcher
// made after Close is stopped from the start.
func (s *Set) Watch(ctx context.Context, service string) *Watcher {
	w := &Watcher{set: s, service: service, q: New(), done: make(chan struct{})}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		w.Stop()
		return w
	}
	if s.watchers == nil {
		s.watchers = map[*Watcher]struct{}{}
	}
	s.watchers[w] = struct{}{}
	s.mu.Unlock()
	// Only now may ctx stop w, so that its removal follows its addition.
	stop := context.AfterFunc(ctx, w.Stop)
	w.mu.Lock()
	w.stopCtx = stop
	w.mu.Unlock()
	select {
	case <-w.done:
		// Stopped (by Close, or by ctx itself) before stopCtx was set, so
		// Stop could not release the context's hold on w: do it here.
		stop()
	default:
	}
	return w
}

// Notify queues an event about svc for every watcher that follows svc.Name,
// each with its own copy; it never blocks on a slow watcher. The caller
// serializes its calls (the registries call it under their own lock), so
// that every watcher sees the changes in the same order.
func (s *Set) Notify(a resolver.Action, svc *resolver.Service) {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	for w := range s.watchers {
		if w.service == "" || w.service == svc.Name {
			w.q.Push(&resolver.Event{Action: a, Service: svc.Clone(), Timestamp: now})
		}
	}
}

// Len reports how many watchers the set holds.
func (s *Set) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.watchers)
}

// Close stops every watcher, and every watcher made afterwards.
func (s *Set) Close() {
	s.mu.Lock()
	s.closed = true
	ws := slices.Collect(maps.Keys(s.watchers))
	s.mu.Unlock()
	// Stop takes s.mu to remove each watcher.
	for _, w := range ws {
		w.Stop()
	}
}

func (s *Set) remove(w *Watcher) {
	s.mu.Lock()
	delete(s.watchers, w)
	s.mu.Unlock()
}

// Watcher is a resolver.Watcher over a Queue, made by Set.Watch.
type Watcher struct {
	set     *Set
	service string
	q       *Queue
	done    chan struct{}
	once    sync.Once

	mu      sync.Mutex
	stopCtx func() bool // releases ctx's AfterFunc; nil until Watch sets it
}

var _ resolver.Watcher = (*Watcher)(nil)

// Next returns the next event, waiting for one; it returns
// resolver.ErrWatcherStopped once the watcher is stopped.
func (w *Watcher) Next() (*resolver.Event, error) { return w.q.Next(w.done) }

// Stop ends the watcher and removes it from its set; it is idempotent.
func (w *Watcher) Stop() {
	w.once.Do(func() {
		close(w.done)
		w.set.remove(w)
		w.mu.Lock()
		stop := w.stopCtx
		w.mu.Unlock()
		if stop != nil {
			stop()
		}
	})
}
