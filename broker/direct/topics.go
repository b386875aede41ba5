package direct

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/microgrpc/microgrpc/resolver"
)

// topicCache follows the subscribers of one topic: a resolver.Follower of
// the topic's registry service, the same watching loop the gRPC resolver
// runs on. It is made on a topic's first Publish and evicted when no
// Publish used it for the idle timeout.
type topicCache struct {
	f        *resolver.Follower
	lastUsed atomic.Int64 // unix nanoseconds of the last Publish
}

func (tc *topicCache) stop() { tc.f.Stop() }

// snapshot returns the subscriber nodes known now; while the registry
// fails, the last ones known.
func (tc *topicCache) snapshot() []resolver.Node { return tc.f.Nodes() }

// topic returns the cache of a topic's subscribers once its first listing
// is done, making it on first use. Publishes wait for that listing: a
// first Publish must not see "no subscribers" because the listing has not
// come back yet. A failed first listing is returned to every Publish that
// waited for it, and the next Publish tries again with a new cache.
func (b *directBroker) topic(ctx context.Context, topic string) (*topicCache, error) {
	for {
		tc, err := b.topicOnce(ctx, topic)
		if !errors.Is(err, resolver.ErrFollowerStopped) {
			return tc, err
		}
		// Eviction stopped the follower before its first listing (a
		// registry slower than the idle timeout): follow it anew. After
		// Disconnect, topicOnce says the broker is closed.
	}
}

func (b *directBroker) topicOnce(ctx context.Context, topic string) (*topicCache, error) {
	b.mu.Lock()
	tc, ok := b.topics[topic]
	if !ok {
		if b.closed {
			b.mu.Unlock()
			return nil, errBrokerClosed
		}
		tc = &topicCache{f: resolver.Follow(b.opts.registry, ServicePrefix+topic, resolver.WithLogger(b.opts.logger))}
		b.topics[topic] = tc
	}
	// Marked under b.mu, so the evictor (which holds it) never removes a
	// cache a Publish has just taken.
	tc.lastUsed.Store(time.Now().UnixNano())
	b.mu.Unlock()
	err := tc.f.Ready(ctx)
	switch {
	case err == nil:
		return tc, nil
	case errors.Is(err, resolver.ErrFollowerStopped):
		// Disconnect or eviction stopped the follower before its first
		// listing: this Publish must not wait for a listing that will
		// never come.
		return nil, err
	case ctx.Err() != nil:
		// Still listing: the cache stays for the next Publish.
		return nil, fmt.Errorf("direct broker: find subscribers of %q in %s: %w", topic, b.opts.registry, ctx.Err())
	}
	b.mu.Lock()
	drop := b.topics[topic] == tc
	if drop {
		delete(b.topics, topic)
	}
	b.mu.Unlock()
	if drop {
		tc.stop()
	}
	return nil, fmt.Errorf("direct broker: find subscribers of %q in %s: %w", topic, b.opts.registry, err)
}

var errBrokerClosed = errors.New("direct broker: closed")

// evictIdle stops the topic caches, and closes the connections to other
// processes, that no Publish used for the idle timeout.
func (b *directBroker) evictIdle(now time.Time) {
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
