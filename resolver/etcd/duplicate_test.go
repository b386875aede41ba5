package etcd_test

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/microgrpc/microgrpc/resolver"
	"github.com/microgrpc/microgrpc/resolver/etcd"
)

// linesWith returns the lines of text that contain word.
func linesWith(text, word string) []string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, word) {
			out = append(out, l)
		}
	}
	return out
}

// countPuts counts the puts on key during d.
func countPuts(t *testing.T, c *clientv3.Client, key string, d time.Duration) int {
	t.Helper()
	wctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	n := 0
	for wr := range c.Watch(wctx, key) {
		for _, ev := range wr.Events {
			if ev.Type == clientv3.EventTypePut {
				n++
			}
		}
	}
	return n
}

// heldBy returns the address in key's value, or "" without the key.
func heldBy(t *testing.T, c *clientv3.Client, key string) string {
	t.Helper()
	resp, err := c.Get(ctx(t), key)
	if err != nil || len(resp.Kvs) == 0 {
		return ""
	}
	v := string(resp.Kvs[0].Value)
	if _, rest, ok := strings.Cut(v, `"Addr":"`); ok {
		addr, _, _ := strings.Cut(rest, `"`)
		return addr
	}
	return v
}

// Two live registrations of one node id (two processes with one fixed
// --server_id) do not fight over the key: the one that finds its key
// taken by another live lease logs one ERROR naming both addresses and
// leaves it, and takes it back when the other deregisters or its lease
// expires. Both used to put their own value back at once, for ever
// (hundreds of writes a second).
func TestDuplicateNodeIDDoesNotFight(t *testing.T) {
	const first, second = "127.0.0.1:1001", "127.0.0.1:1002"
	var logs lockedBuffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	a := newRegistry(t, server.Endpoint(), etcd.WithLogger(logger))
	b := newRegistry(t, server.Endpoint(), etcd.WithLogger(logger))
	c := client(t, server.Endpoint())
	key := prefix(t) + "/greeter/n1"
	ttl := resolver.WithTTL(2 * time.Second)
	if err := a.Register(ctx(t), node("n1", first), ttl); err != nil {
		t.Fatal(err)
	}
	if err := b.Register(ctx(t), node("n1", second), ttl); err != nil {
		t.Fatal(err)
	}
	n := countPuts(t, c, key, 3*time.Second)
	t.Logf("%d writes of the key in 3 s", n)
	if n > 2 {
		t.Fatalf("%d writes of the key in 3 s by two registrations of one node id, want at most 2", n)
	}
	if got := heldBy(t, c, key); got != second {
		t.Fatalf("the key holds %q, want the last registration's %s", got, second)
	}
	errs := linesWith(logs.String(), "level=ERROR")
	if len(errs) != 1 || !strings.Contains(errs[0], first) || !strings.Contains(errs[0], second) {
		t.Fatalf("ERROR lines %q, want one naming %s and %s", errs, first, second)
	}
	if testing.Verbose() {
		t.Log(errs[0])
	}
	// Heartbeats of the one that gave way do not take the key.
	for range 3 {
		if err := a.Register(ctx(t), node("n1", first), ttl); err != nil {
			t.Fatal(err)
		}
	}
	if got := heldBy(t, c, key); got != second {
		t.Fatalf("after heartbeats the key holds %q, want %s", got, second)
	}

	// The other deregisters: ours is back.
	if err := b.Deregister(ctx(t), node("n1", second)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the key back after the other deregistered", func() bool { return heldBy(t, c, key) == first })

	// The other takes the key again and then dies (its lease expires):
	// ours is back.
	if err := b.Register(ctx(t), node("n1", second), ttl); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the other to hold the key", func() bool { return heldBy(t, c, key) == second })
	if n := countPuts(t, c, key, time.Second); n != 0 {
		t.Fatalf("%d writes in 1 s after the other registered again, want none", n)
	}
	b.Close()
	eventually(t, "the key back after the other's lease expired", func() bool { return heldBy(t, c, key) == first })
}

// A writer without a lease that overwrites the key each time it is put
// back (a script, a misconfigured tool) gets a backoff, not a write loop:
// the put-backs slow down (100 ms, then 1.6 times longer each time).
func TestOverwritesArePutBackWithBackoff(t *testing.T) {
	r := newRegistry(t, server.Endpoint())
	if err := r.Register(ctx(t), node("a", "127.0.0.1:1")); err != nil {
		t.Fatal(err)
	}
	c := client(t, server.Endpoint())
	key := prefix(t) + "/greeter/a"
	fctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(1)
	putBacks := 0
	go func() { // the other writer
		defer wg.Done()
		wch := c.Watch(fctx, key)
		c.Put(fctx, key, "garbage")
		for wr := range wch {
			for _, ev := range wr.Events {
				if ev.Type == clientv3.EventTypePut && string(ev.Kv.Value) != "garbage" {
					putBacks++
					c.Put(fctx, key, "garbage")
				}
			}
		}
	}()
	wg.Wait()
	t.Logf("%d put-backs in 3 s", putBacks)
	// 100+160+256+410+655+1048 ms: 6 fit in 3 s; allow for jitter.
	if putBacks < 2 || putBacks > 8 {
		t.Fatalf("%d put-backs in 3 s against a writer that overwrites each at once, want 2 to 8", putBacks)
	}
	eventually(t, "the key put back once the other writer stopped", func() bool { return heldBy(t, c, key) == "127.0.0.1:1" })
}
