package etcd

import (
	"context"
	"fmt"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/microgrpc/microgrpc/internal/backoff"
)

// keeper keeps one key registered: it keeps its lease alive, watches the
// key, puts its value back when someone else overwrote it, and puts it
// back on a new lease whenever the key or the lease is lost.
type keeper struct {
	r      *Registry
	key    string
	cancel context.CancelFunc
	done   chan struct{}
	wake   chan struct{}

	mu    sync.Mutex
	value string
	ttl   int64
	lease clientv3.LeaseID
	// rev is the revision of the put that made lease's key: the watch
	// starts after it, so that a delete between the put and the watch's
	// start is seen (a watch from "now" missed it).
	rev   int64
	dirty bool // value changed since the last put
}

// refresh handles a heartbeat: a changed value is put at once on the
// current lease (so that Register returns only once it is announced); in
// any case the keeper is woken, which makes it retry at once if it is
// waiting out a backoff.
func (k *keeper) refresh(ctx context.Context, value string, ttl int64) error {
	k.mu.Lock()
	changed := value != k.value || ttl != k.ttl
	k.value, k.ttl = value, ttl
	lease := k.lease
	var err error
	if changed && lease != 0 {
		if _, err = k.r.kv.Put(ctx, k.key, value, clientv3.WithLease(lease)); err != nil {
			k.dirty = true // the keeper retries
		}
	} else if changed {
		k.dirty = true
	}
	k.mu.Unlock()
	select {
	case k.wake <- struct{}{}:
	default:
	}
	if err != nil {
		return fmt.Errorf("etcd registry: re-announce %s: %w", k.key, err)
	}
	return nil
}

// stop ends the keeper and returns its current lease.
func (k *keeper) stop() clientv3.LeaseID {
	k.cancel()
	<-k.done
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.lease
}

func (k *keeper) run(ctx context.Context) {
	defer k.r.wg.Done()
	defer close(k.done)
	log := k.r.opts.logger.With("key", k.key)
	failures := 0
	lost := false
	for ctx.Err() == nil {
		k.mu.Lock()
		lease := k.lease
		k.mu.Unlock()
		if lease == 0 {
			k.mu.Lock()
			value, ttl := k.value, k.ttl
			k.mu.Unlock()
			// Bounded: a call into an etcd that is down may otherwise wait
			// for it forever, and the recovery would never be logged.
			pctx, cancel := context.WithTimeout(ctx, k.r.opts.dialTimeout+time.Duration(ttl)*time.Second)
			id, rev, err := k.r.put(pctx, k.key, value, ttl)
			cancel()
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				d := retryPolicy.Delay(failures)
				failures++
				log.Warn("etcd registry: re-registration failed, retrying", "error", err, "retry_in", d, "attempt", failures)
				if !backoff.Sleep(ctx, d, k.wake) {
					return
				}
				continue
			}
			k.mu.Lock()
			k.lease, k.rev = id, rev
			k.mu.Unlock()
			if failures > 0 || lost {
				log.Info("etcd registry: registration restored", "lease", int64(id), "after_attempts", failures)
			}
			lost = false
			failures = 0
		}
		why := k.hold(ctx)
		if ctx.Err() != nil {
			return
		}
		log.Warn("etcd registry: registration lost, registering again", "reason", why)
		lost = true
		k.mu.Lock()
		k.lease = 0
		k.mu.Unlock()
	}
}

// hold keeps the current lease alive and watches the key until one of them
// is lost (it returns why) or ctx ends. A changed value is put on the
// same lease.
func (k *keeper) hold(ctx context.Context) string {
	hctx, cancel := context.WithCancel(ctx)
	defer cancel()
	k.mu.Lock()
	lease, rev := k.lease, k.rev
	k.mu.Unlock()
	ka, err := k.r.client.KeepAlive(hctx, lease)
	if err != nil {
		return "keepalive: " + err.Error()
	}
	watch := func(after int64) clientv3.WatchChan {
		return k.r.client.Watch(clientv3.WithRequireLeader(hctx), k.key, clientv3.WithRev(after+1))
	}
	wch := watch(rev)
	for {
		select {
		case <-ctx.Done():
			return ""
		case _, ok := <-ka:
			if !ok {
				return "lease keepalive ended (lease expired or etcd unreachable)"
			}
		case wr, ok := <-wch:
			if !ok || wr.Canceled {
				// The watch ended (etcd lost its leader or restarted):
				// check the key ourselves before deciding.
				at, ok := k.present(hctx)
				if !ok {
					return "key missing or not ours after the watch ended"
				}
				wch = watch(at)
				continue
			}
			for _, ev := range wr.Events {
				if ev.Type == clientv3.EventTypeDelete {
					return "key deleted"
				}
				k.mu.Lock()
				ours := string(ev.Kv.Value) == k.value && clientv3.LeaseID(ev.Kv.Lease) == lease
				value := k.value
				k.mu.Unlock()
				if !ours {
					// Someone else wrote our key: put our value back.
					log := k.r.opts.logger.With("key", k.key)
					log.Warn("etcd registry: registration overwritten, putting it back")
					if _, err := k.r.kv.Put(ctx, k.key, value, clientv3.WithLease(lease)); err != nil {
						return "put back overwritten value: " + err.Error()
					}
				}
			}
		case <-k.wake:
			k.mu.Lock()
			value, dirty := k.value, k.dirty
			k.dirty = false
			k.mu.Unlock()
			if !dirty {
				continue
			}
			if _, err := k.r.kv.Put(ctx, k.key, value, clientv3.WithLease(lease)); err != nil {
				k.mu.Lock()
				k.dirty = true
				k.mu.Unlock()
				return "put changed value: " + err.Error()
			}
		}
	}
}

// present reports whether the key holds our value, and the revision it
// was read at.
func (k *keeper) present(ctx context.Context) (int64, bool) {
	resp, err := k.r.kv.Get(ctx, k.key)
	if err != nil || len(resp.Kvs) == 0 {
		return 0, false
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	return resp.Header.Revision, string(resp.Kvs[0].Value) == k.value
}
