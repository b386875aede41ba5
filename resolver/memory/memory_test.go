package memory_test

import (
	"context"
	"errors"
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

func TestRegisterGetDeregister(t *testing.T) {
	reg := memory.NewRegistry()
	ctx := testCtx(t)
	for _, s := range []*resolver.Service{svc("a", "v1"), svc("b", "v1"), svc("c", "v2")} {
		if err := reg.Register(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	got, err := reg.GetService(ctx, "greeter")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Version != "v1" || len(got[0].Nodes) != 2 || got[1].Version != "v2" || len(got[1].Nodes) != 1 {
		t.Fatalf("GetService grouped by version = %+v", got)
	}
	// Results are copies.
	got[0].Nodes[0].Metadata["k"] = "changed"
	again, _ := reg.GetService(ctx, "greeter")
	if again[0].Nodes[0].Metadata["k"] != "a" {
		t.Fatal("GetService shares maps with the registry")
	}
	list, err := reg.ListServices(ctx)
	if err != nil || len(list) != 2 {
		t.Fatalf("ListServices = %v, %v", list, err)
	}
	for _, id := range []string{"a", "b", "c"} {
		if err := reg.Deregister(ctx, svc(id, "")); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := reg.GetService(ctx, "greeter"); !errors.Is(err, resolver.ErrNotFound) {
		t.Fatalf("GetService after deregister = %v, want ErrNotFound", err)
	}
	if err := reg.Deregister(ctx, svc("a", "")); err != nil {
		t.Fatalf("deregistering an unknown node: %v", err)
	}
}

func TestRegisterValidates(t *testing.T) {
	reg := memory.NewRegistry()
	bad := []*resolver.Service{
		nil,
		{Name: "", Nodes: []resolver.Node{{ID: "a", Address: "x:1"}}},
		{Name: "a/b", Nodes: []resolver.Node{{ID: "a", Address: "x:1"}}},
		{Name: "a"},
		{Name: "a", Nodes: []resolver.Node{{ID: "", Address: "x:1"}}},
		{Name: "a", Nodes: []resolver.Node{{ID: "x/y", Address: "x:1"}}},
		{Name: "a", Nodes: []resolver.Node{{ID: "x"}}},
	}
	for _, s := range bad {
		if err := reg.Register(testCtx(t), s); !errors.Is(err, resolver.ErrInvalidService) {
			t.Errorf("Register(%+v) = %v, want ErrInvalidService", s, err)
		}
	}
}

func TestTTLExpiryAndRefresh(t *testing.T) {
	reg := memory.NewRegistry()
	ctx := testCtx(t)
	ttl := 500 * time.Millisecond
	if err := reg.Register(ctx, svc("a", ""), resolver.WithTTL(ttl)); err != nil {
		t.Fatal(err)
	}
	// Refreshing keeps it alive past its first TTL.
	for range 3 {
		time.Sleep(ttl / 4)
		if err := reg.Register(ctx, svc("a", ""), resolver.WithTTL(ttl)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := reg.GetService(ctx, "greeter"); err != nil {
		t.Fatalf("refreshed node expired: %v", err)
	}
	// Without heartbeats it expires after its TTL.
	start := time.Now()
	for {
		_, err := reg.GetService(ctx, "greeter")
		if errors.Is(err, resolver.ErrNotFound) {
			break
		}
		if ctx.Err() != nil {
			t.Fatal("node never expired")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if d := time.Since(start); d < ttl/2 || d > ttl*5 {
		t.Fatalf("expired after %v, want about %v", d, ttl)
	}
}

func TestWatchEvents(t *testing.T) {
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

func TestWatchStops(t *testing.T) {
	reg := memory.NewRegistry()
	ctx, cancel := context.WithCancel(testCtx(t))
	w, err := reg.Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error)
	go func() {
		_, err := w.Next()
		done <- err
	}()
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, resolver.ErrWatcherStopped) {
			t.Fatalf("Next after cancel = %v", err)
		}
	case <-time.After(defaultTestTimeout):
		t.Fatal("Next did not return after the context ended")
	}
	w.Stop() // idempotent
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
