// Package eventq is the unbounded event queue behind the registries'
// watchers: a registry pushes without ever blocking on a slow watcher, and
// the watcher's Next pops in order.
package eventq

import (
	"context"
	"sync"

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

// Watcher is a resolver.Watcher over a Queue: it stops when Stop is called
// or its context ends, and then calls onStop once (the registry forgets
// it there).
type Watcher struct {
	q       *Queue
	done    chan struct{}
	once    sync.Once
	onStop  func()
	mu      sync.Mutex
	stopCtx func() bool
}

// NewWatcher returns a watcher stopped by ctx or Stop.
func NewWatcher(ctx context.Context, onStop func()) *Watcher {
	w := &Watcher{q: New(), done: make(chan struct{}), onStop: onStop}
	stop := context.AfterFunc(ctx, w.Stop)
	w.mu.Lock()
	w.stopCtx = stop
	w.mu.Unlock()
	return w
}

// Push queues ev for Next.
func (w *Watcher) Push(ev *resolver.Event) { w.q.Push(ev) }

// Next returns the next event.
func (w *Watcher) Next() (*resolver.Event, error) { return w.q.Next(w.done) }

// Stop ends the watcher; it is idempotent.
func (w *Watcher) Stop() {
	w.once.Do(func() {
		close(w.done)
		w.mu.Lock()
		stop := w.stopCtx
		w.mu.Unlock()
		if stop != nil {
			stop()
		}
		if w.onStop != nil {
			w.onStop()
		}
	})
}
