package memory_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/microgrpc/microgrpc/resolver"
	"github.com/microgrpc/microgrpc/resolver/memory"
)

const defaultTestTimeout = 10 * time.Second

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), defaultTestTimeout)
	t.Cleanup(cancel)
	return ctx
}

func svc(id, version string) *resolver.Service {
	return &resolver.Service{Name: "greeter", Version: version,
		Nodes: []resolver.Node{{ID: id, Address: "127.0.0.1:1", Metadata: map[string]string{"k": id}}}}
}

// Changes made back to back, without waiting for their events (the kit
// waits for each), reach a watcher in the order they were made, an expiry
// among them: the registry notifies under its lock.
func TestWatchEventsInOrderOfChanges(t *testing.T) {
	reg := memory.NewRegistry()
	ctx := testCtx(t)
	w, err := reg.Watch(ctx, resolver.WatchService("greeter"))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	reg.Register(ctx, &resolver.Service{Name: "other", Nodes: []resolver.Node{{ID: "o", Address: "x:1"}}})
	reg.Register(ctx, svc("a", ""))
	reg.Register(ctx, svc("a", ""))
	reg.Register(ctx, svc("b", ""), resolver.WithTTL(20*time.Millisecond))
	reg.Deregister(ctx, svc("a", ""))
	want := []string{"create a", "update a", "create b", "delete a", "delete b"}
	for _, wnt := range want {
		ev, err := w.Next()
		if err != nil {
			t.Fatal(err)
		}
		if got := string(ev.Action) + " " + ev.Service.Nodes[0].ID; got != wnt {
			t.Fatalf("event %q, want %q", got, wnt)
		}
	}
}

// A watcher whose context ends while Watch is still adding it must not stay
// registered: nothing would ever read its queue, which would then grow with
// every change for the life of the registry.
func TestStoppedWatchersAreForgotten(t *testing.T) {
	reg := memory.NewRegistry()
	ctx := testCtx(t)
	// 10,000 watchers, in rounds of 1,000 so that the goroutines alive at
	// once stay under the race detector's limit.
	const rounds, perRound = 10, 1000
	for range rounds {
		var wg sync.WaitGroup
		for i := range perRound {
			wctx, cancel := context.WithCancel(ctx)
			start := make(chan struct{})
			// Cancel concurrently with Watch, so that the context ends at
			// every point of it; every other watcher is also stopped
			// explicitly.
			wg.Go(func() {
				<-start
				cancel()
			})
			wg.Go(func() {
				close(start)
				w, err := reg.Watch(wctx)
				if err != nil {
					return // cancelled before Watch began: nothing registered
				}
				if i%2 == 1 {
					w.Stop()
				}
			})
		}
		wg.Wait()
	}
	// Watchers stopped by their context go asynchronously: poll.
	waitNoWatchers(t, ctx, func() int { return memory.WatcherCount(reg) })
	// A change now reaches no one, and queues nothing.
	if err := reg.Register(ctx, svc("a", "")); err != nil {
		t.Fatal(err)
	}
	if got := memory.WatcherCount(reg); got != 0 {
		t.Fatalf("%d watchers registered after all were stopped", got)
	}
}

// waitNoWatchers polls count until it is 0, failing when ctx ends first.
func waitNoWatchers(t *testing.T, ctx context.Context, count func() int) {
	t.Helper()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		got := count()
		if got == 0 {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%d stopped watchers are still registered", got)
		case <-tick.C:
		}
	}
}
