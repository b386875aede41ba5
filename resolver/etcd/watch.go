package etcd

import (
	"context"
	"fmt"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/microgrpc/microgrpc/internal/backoff"
	"github.com/microgrpc/microgrpc/resolver"
	"github.com/microgrpc/microgrpc/resolver/internal/eventq"
)

// Watch follows the nodes of one service (resolver.WatchService) or of all
// services under the prefix. Events are emitted for changes after Watch
// returns; after an error the watcher re-lists, emits the differences, and
// watches again, so it never freezes and never misses a change for good.
func (r *Registry) Watch(ctx context.Context, opts ...resolver.WatchOption) (resolver.Watcher, error) {
	o := resolver.NewWatchOptions(opts...)
	prefix := r.opts.prefix + "/"
	if o.Service != "" {
		if err := resolver.ValidateName(o.Service); err != nil {
			return nil, err
		}
		prefix = r.serviceKey(o.Service)
	}
	w, _, err := r.watch(ctx, prefix)
	return w, err
}

// ListWatch lists a service and watches it from that listing, with one
// read of etcd (resolver.ListWatcher).
func (r *Registry) ListWatch(ctx context.Context, name string) ([]*resolver.Service, resolver.Watcher, error) {
	if err := resolver.ValidateName(name); err != nil {
		return nil, nil, err
	}
	w, known, err := r.watch(ctx, r.serviceKey(name))
	if err != nil {
		return nil, nil, err
	}
	return resolver.GroupByVersion(known), w, nil // it copies them
}

// watch starts a watcher of prefix and returns it with what its first
// listing found, one node per Service.
func (r *Registry) watch(ctx context.Context, prefix string) (*watcher, []*resolver.Service, error) {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil, nil, ErrClosed
	}
	r.wg.Add(1)
	r.mu.Unlock()
	wctx, cancel := context.WithCancel(ctx)
	stopOnClose := context.AfterFunc(r.ctx, cancel)
	w := &watcher{r: r, prefix: prefix, ctx: wctx, cancel: cancel, q: eventq.New(),
		known: map[string]*resolver.Service{}, done: make(chan struct{})}
	// The first listing is synchronous (and bounded: an unreachable etcd
	// is an error here): events start from its revision.
	lctx, lcancel := r.readContext(ctx)
	rev, err := w.list(lctx, false)
	lcancel()
	if err != nil {
		cancel()
		stopOnClose()
		r.wg.Done()
		return nil, nil, fmt.Errorf("etcd registry: watch %s in etcd at %s: %w", prefix, strings.Join(r.endpoints, ","), r.explain(err))
	}
	// Taken before the run goroutine starts changing w.known.
	known := make([]*resolver.Service, 0, len(w.known))
	for _, s := range w.known {
		known = append(known, s)
	}
	go func() {
		defer r.wg.Done()
		defer close(w.done)
		defer stopOnClose()
		w.run(rev)
	}()
	return w, known, nil
}

type watcher struct {
	r      *Registry
	prefix string
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}

	// known is the run goroutine's view: key -> node.
	known map[string]*resolver.Service

	q *eventq.Queue
}

// list reads the prefix (linearizable) and, when emit is set, queues the
// differences from what was known. It returns the read's revision.
func (w *watcher) list(ctx context.Context, emit bool) (int64, error) {
	resp, err := w.r.kv.Get(ctx, w.prefix, clientv3.WithPrefix())
	if err != nil {
		return 0, err
	}
	now := map[string]*resolver.Service{}
	for _, kv := range resp.Kvs {
		if s, ok := w.r.decode(kv.Key, kv.Value); ok {
			now[string(kv.Key)] = s
		}
	}
	if emit {
		for k, s := range now {
			if old, ok := w.known[k]; !ok {
				w.push(resolver.Create, s)
			} else if !sameNode(old, s) {
				w.push(resolver.Update, s)
			}
		}
		for k, s := range w.known {
			if _, ok := now[k]; !ok {
				w.push(resolver.Delete, s)
			}
		}
	}
	w.known = now
	return resp.Header.Revision, nil
}

func sameNode(a, b *resolver.Service) bool {
	ea, _ := encodeKey(a)
	eb, _ := encodeKey(b)
	return ea == eb
}

func (w *watcher) run(rev int64) {
	failures := 0
	for w.ctx.Err() == nil {
		err := w.follow(rev)
		if w.ctx.Err() != nil {
			return
		}
		d := retryPolicy.Delay(failures)
		failures++
		w.r.opts.logger.Warn("etcd registry: watch interrupted, re-listing", "prefix", w.prefix, "error", err, "retry_in", d)
		if !backoff.Sleep(w.ctx, d, nil) {
			return
		}
		if rev, err = w.list(w.ctx, true); err != nil {
			continue
		}
		failures = 0
	}
}

// follow applies watch events from rev+1 until the watch fails.
func (w *watcher) follow(rev int64) error {
	ctx, cancel := context.WithCancel(clientv3.WithRequireLeader(w.ctx))
	defer cancel()
	wch := w.r.client.Watch(ctx, w.prefix, clientv3.WithPrefix(), clientv3.WithRev(rev+1), clientv3.WithPrevKV())
	for wr := range wch {
		if err := wr.Err(); err != nil {
			return err // compacted, no leader, ...
		}
		for _, ev := range wr.Events {
			key := string(ev.Kv.Key)
			switch ev.Type {
			case clientv3.EventTypePut:
				s, ok := w.r.decode(ev.Kv.Key, ev.Kv.Value)
				if !ok {
					// A node whose record no longer decodes is gone for
					// us (its own node puts it back, if it lives).
					if old, known := w.known[key]; known {
						delete(w.known, key)
						w.push(resolver.Delete, old)
					}
					continue
				}
				action := resolver.Create
				if _, known := w.known[key]; known {
					action = resolver.Update
				}
				w.known[key] = s
				w.push(action, s)
			case clientv3.EventTypeDelete:
				if s, known := w.known[key]; known {
					delete(w.known, key)
					w.push(resolver.Delete, s)
				}
			}
		}
	}
	return errWatchClosed
}

type watchClosedError struct{}

func (watchClosedError) Error() string { return "watch channel closed" }

var errWatchClosed error = watchClosedError{}

func (w *watcher) push(a resolver.Action, s *resolver.Service) {
	w.q.Push(&resolver.Event{Action: a, Service: s.Clone(), Timestamp: time.Now()})
}

func (w *watcher) Next() (*resolver.Event, error) { return w.q.Next(w.ctx.Done()) }

// Stop ends the watch and waits for its goroutine.
func (w *watcher) Stop() {
	w.cancel()
	<-w.done
}

// encodeKey is a canonical form of a node for comparisons.
func encodeKey(s *resolver.Service) (string, error) {
	var b strings.Builder
	b.WriteString(s.Version)
	for _, n := range s.Nodes {
		b.WriteString("|" + n.ID + "|" + n.Address)
		for _, k := range sortedKeys(n.Metadata) {
			b.WriteString("|" + k + "=" + n.Metadata[k])
		}
	}
	for _, e := range s.Endpoints {
		b.WriteString("|" + e.Name)
	}
	return b.String(), nil
}
