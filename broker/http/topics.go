package http

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/microgrpc/microgrpc/resolver"
)

// topicCache follows the subscribers of one topic through a registry
// watch. It is made on a topic's first Publish and evicted when no Publish
// used it for the idle timeout.
type topicCache struct {
	b      *httpBroker
	topic  string
	name   string // registry service name
	cancel context.CancelFunc
	done   chan struct{} // closed when the follower goroutine returned

	// ready is closed once the first listing finished; err is its failure
	// (set before ready is closed, read only after). Publishes wait for
	// ready: a first Publish must not see "no subscribers" because the
	// listing has not come back yet.
	ready chan struct{}
	err   error

	lastUsed atomic.Int64 // unix nanoseconds of the last Publish

	mu    sync.RWMutex
	nodes map[string]resolver.Node
}

func (tc *topicCache) stop() {
	tc.cancel()
	<-tc.done
}

func (tc *topicCache) snapshot() []resolver.Node {
	tc.mu.RLock()
	defer tc.mu.RUnlock()
	out := make([]resolver.Node, 0, len(tc.nodes))
	for _, n := range tc.nodes {
		out = append(out, n)
	}
	return out
}

// topic returns the cache of a topic's subscribers once its first listing
// is done, making it on first use. A failed first listing is returned to
// every Publish that waited for it, and the next Publish tries again.
func (b *httpBroker) topic(ctx context.Context, topic string) (*topicCache, error) {
	b.mu.Lock()
	tc, ok := b.topics[topic]
	if !ok {
		if b.closed {
			b.mu.Unlock()
			return nil, errBrokerClosed
		}
		wctx, cancel := context.WithCancel(b.ctx)
		tc = &topicCache{b: b, topic: topic, name: ServicePrefix + topic, cancel: cancel,
			done: make(chan struct{}), ready: make(chan struct{}), nodes: map[string]resolver.Node{}}
		b.topics[topic] = tc
		b.wg.Add(1)
		go func() {
			defer b.wg.Done()
			defer close(tc.done)
			tc.run(wctx)
		}()
	}
	// Marked under b.mu, so the evictor (which holds it) never removes a
	// cache a Publish has just taken.
	tc.lastUsed.Store(time.Now().UnixNano())
	b.mu.Unlock()
	select {
	case <-tc.ready:
	case <-ctx.Done():
		return nil, fmt.Errorf("http broker: find subscribers of %q in %s: %w", topic, b.opts.registry, ctx.Err())
	}
	if tc.err != nil {
		return nil, tc.err
	}
	return tc, nil
}

var errBrokerClosed = errors.New("http broker: closed")

// run lists the subscribers, then follows them: it applies watch events
// and, when the watch fails, re-lists and watches again, backing off.
func (tc *topicCache) run(ctx context.Context) {
	b := tc.b
	lctx, cancel := context.WithTimeout(ctx, b.opts.requestTimeout)
	w, err := b.opts.registry.Watch(ctx, resolver.WatchService(tc.name))
	if err == nil {
		if err = tc.list(lctx); err != nil {
			w.Stop()
		}
	}
	cancel()
	if err != nil {
		tc.err = fmt.Errorf("http broker: find subscribers of %q in %s: %w", tc.topic, b.opts.registry, err)
		b.mu.Lock()
		if b.topics[tc.topic] == tc {
			delete(b.topics, tc.topic)
		}
		b.mu.Unlock()
		close(tc.ready)
		return
	}
	close(tc.ready)
	tc.follow(ctx, w)
}

func (tc *topicCache) list(ctx context.Context) error {
	svcs, err := tc.b.opts.registry.GetService(ctx, tc.name)
	if err != nil && !errors.Is(err, resolver.ErrNotFound) {
		return err
	}
	tc.mu.Lock()
	defer tc.mu.Unlock()
	clear(tc.nodes)
	for _, s := range svcs {
		for _, n := range s.Nodes {
			tc.nodes[n.ID] = n
		}
	}
	return nil
}

// follow applies watch events; when the watch fails it re-lists and
// watches again, backing off.
func (tc *topicCache) follow(ctx context.Context, w resolver.Watcher) {
	delay := 100 * time.Millisecond
	for {
		for {
			ev, err := w.Next()
			if err != nil {
				break
			}
			tc.mu.Lock()
			for _, n := range ev.Service.Nodes {
				if ev.Action == resolver.Delete {
					delete(tc.nodes, n.ID)
				} else {
					tc.nodes[n.ID] = n
				}
			}
			tc.mu.Unlock()
		}
		w.Stop()
		for {
			t := time.NewTimer(delay)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			delay = min(2*delay, 10*time.Second)
			var err error
			if w, err = tc.b.opts.registry.Watch(ctx, resolver.WatchService(tc.name)); err != nil {
				continue
			}
			if err := tc.list(ctx); err != nil {
				w.Stop()
				continue
			}
			delay = 100 * time.Millisecond
			break
		}
	}
}

// evictIdle stops the topic caches, and closes the connections to other
// processes, that no Publish used for the idle timeout.
func (b *httpBroker) evictIdle(now time.Time) {
	cutoff := now.Add(-b.opts.idleTimeout).UnixNano()
	var stale []*topicCache
	var idle []*peer
	b.mu.Lock()
	for name, tc := range b.topics {
		if tc.lastUsed.Load() < cutoff {
			delete(b.topics, name)
			stale = append(stale, tc)
		}
	}
	for key, p := range b.peers {
		if p.idleSince(cutoff) {
			delete(b.peers, key)
			idle = append(idle, p)
		}
	}
	b.mu.Unlock()
	for _, tc := range stale {
		tc.stop()
	}
	for _, p := range idle {
		p.close(errIdle)
	}
}

var errIdle = errors.New("idle")
