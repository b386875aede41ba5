package etcd

import (
	"context"
	"fmt"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/microgrpc/microgrpc/internal/backoff"
	"github.com/microgrpc/microgrpc/resolver/etcd/internal/wire"
)

// keeper keeps one key registered: it keeps its lease alive, watches the
// key, puts its value back (with backoff) when someone damaged or
// overwrote it, and puts it back on a new lease whenever the key or the
// lease is lost. A key that another live lease holds is not put back:
// two processes with one node id would otherwise overwrite each other
// for ever; the keeper logs it once and waits for the key to be free.
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
	// yielded: another live lease holds the key (a second process with
	// this node id). The keeper leaves the key to it, puts nothing (a
	// changed value waits in dirty) and takes the key back when it is
	// deleted, which it is when the other deregisters or its lease
	// expires.
	yielded bool
}

// refresh handles a heartbeat: a changed value is put at once on the
// current lease (so that Register returns only once it is announced),
// unless the keeper yielded the key (it is put when the key is back); in
// any case the keeper is woken, which makes it retry at once if it is
// waiting out a backoff.
func (k *keeper) refresh(ctx context.Context, value string, ttl int64) error {
	k.mu.Lock()
	changed := value != k.value || ttl != k.ttl
	k.value, k.ttl = value, ttl
	lease := k.lease
	var err error
	if changed && lease != 0 && !k.yielded {
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
			k.lease, k.rev, k.yielded = id, rev, false
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
// same lease; a damaged or overwritten value is put back after a backoff
// that grows while the overwrites go on, unless another live lease holds
// the key (see yielded).
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
	// The pending put-back: putBack fires it; putBacks counts those in a
	// row, which a put-back that held for longer than the backoff's cap
	// ends (the next overwrite is put back after the shortest delay).
	putBack := time.NewTimer(time.Hour)
	putBack.Stop()
	defer putBack.Stop()
	pending, putBacks := false, 0
	var lastPutBack time.Time
	judge := func(kv *mvccpb.KeyValue) {
		switch k.judge(hctx, kv, lease) {
		case keyOurs:
		case keyTaken:
			if pending {
				putBack.Stop()
				pending = false
			}
		case keyDamaged:
			if pending {
				return
			}
			if time.Since(lastPutBack) > retryPolicy.Max {
				putBacks = 0
			}
			d := retryPolicy.Delay(putBacks)
			putBacks++
			k.r.opts.logger.Warn("etcd registry: registration overwritten, putting it back", "key", k.key, "in", d)
			putBack.Reset(d)
			pending = true
		}
	}
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
				// look at the key ourselves before deciding.
				resp, err := k.r.kv.Get(hctx, k.key)
				if err != nil || len(resp.Kvs) == 0 {
					return "key missing after the watch ended"
				}
				judge(resp.Kvs[0])
				wch = watch(resp.Header.Revision)
				continue
			}
			for _, ev := range wr.Events {
				if ev.Type == clientv3.EventTypeDelete {
					return "key deleted"
				}
				judge(ev.Kv)
			}
		case <-putBack.C:
			pending, lastPutBack = false, time.Now()
			k.mu.Lock()
			value := k.value
			k.dirty, k.yielded = false, false
			k.mu.Unlock()
			if _, err := k.r.kv.Put(ctx, k.key, value, clientv3.WithLease(lease)); err != nil {
				return "put back overwritten value: " + err.Error()
			}
		case <-k.wake:
			k.mu.Lock()
			value, dirty := k.value, k.dirty && !k.yielded
			if dirty {
				k.dirty = false
			}
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

// What the key holds, for judge.
const (
	keyOurs    = iota // our value on our lease
	keyTaken          // another registration's, on a live lease of its own
	keyDamaged        // anything else: put ours back
)

// judge says what kv, the key's current state, is to a keeper holding
// lease, and logs (once) that another live registration took the key.
func (k *keeper) judge(ctx context.Context, kv *mvccpb.KeyValue, lease clientv3.LeaseID) int {
	k.mu.Lock()
	value, wasYielded := k.value, k.yielded
	k.mu.Unlock()
	other := clientv3.LeaseID(kv.Lease)
	if other == lease {
		if string(kv.Value) == value {
			k.mu.Lock()
			k.yielded = false
			k.mu.Unlock()
			return keyOurs
		}
		return keyDamaged
	}
	if other == 0 || !k.leaseAlive(ctx, other) {
		return keyDamaged
	}
	k.mu.Lock()
	k.yielded = true
	k.mu.Unlock()
	if !wasYielded {
		k.r.opts.logger.Error("etcd registry: another live process registered this node id; "+
			"leaving the key to it until it deregisters or its lease expires (give each process its own id)",
			"key", k.key, "ours", k.address(value), "theirs", k.address(string(kv.Value)), "their_lease", int64(other))
	}
	return keyTaken
}

// leaseAlive reports whether lease exists and has time left; when etcd
// cannot tell, it is taken for dead (its key is then put back, with
// backoff, which is bounded either way).
func (k *keeper) leaseAlive(ctx context.Context, lease clientv3.LeaseID) bool {
	resp, err := k.r.client.TimeToLive(ctx, lease)
	return err == nil && resp.TTL > 0
}

// address is the node address in a value of the key, or the value itself
// (cut short) when it does not decode.
func (k *keeper) address(value string) string {
	if service, id, err := k.r.splitKey(k.key); err == nil {
		if s, err := wire.Decode([]byte(value), service, id); err == nil && len(s.Nodes) == 1 {
			return s.Nodes[0].Address
		}
	}
	if len(value) > 64 {
		value = value[:64] + "..."
	}
	return value
}
