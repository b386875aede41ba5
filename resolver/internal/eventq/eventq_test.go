package eventq_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/microgrpc/microgrpc/resolver"
	"github.com/microgrpc/microgrpc/resolver/internal/eventq"
)

const defaultTestTimeout = 10 * time.Second

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), defaultTestTimeout)
	t.Cleanup(cancel)
	return ctx
}

func svc(name, id string) *resolver.Service {
	return &resolver.Service{Name: name, Nodes: []resolver.Node{{ID: id, Address: "127.0.0.1:1"}}}
}

// waitLen polls s until it holds want watchers, failing when ctx ends first.
func waitLen(t *testing.T, ctx context.Context, s *eventq.Set, want int) {
	t.Helper()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for s.Len() != want {
		select {
		case <-ctx.Done():
			t.Fatalf("set holds %d watchers, want %d", s.Len(), want)
		case <-tick.C:
		}
	}
}

func TestSetForgetsStoppedWatchers(t *testing.T) {
	ctx := testCtx(t)
	var s eventq.Set
	var wg sync.WaitGroup
	for i := range 1000 {
		wctx, cancel := context.WithCancel(ctx)
		switch i % 3 {
		case 0:
			cancel() // over before Watch
		case 1:
			wg.Go(cancel) // ends during Watch
		}
		wg.Go(func() {
			w := s.Watch(wctx, "")
			if i%3 == 2 {
				w.Stop()
				w.Stop() // idempotent
				cancel()
			}
		})
	}
	wg.Wait()
	waitLen(t, ctx, &s, 0)
}

func TestNotifyFiltersAndKeepsOrder(t *testing.T) {
	ctx := testCtx(t)
	var s eventq.Set
	all, one := s.Watch(ctx, ""), s.Watch(ctx, "a")
	defer all.Stop()
	defer one.Stop()
	s.Notify(resolver.Create, svc("a", "1"))
	s.Notify(resolver.Create, svc("b", "2"))
	s.Notify(resolver.Delete, svc("a", "1"))
	for _, tc := range []struct {
		w    resolver.Watcher
		want []string
	}{
		{all, []string{"create a/1", "create b/2", "delete a/1"}},
		{one, []string{"create a/1", "delete a/1"}},
	} {
		for _, want := range tc.want {
			ev, err := tc.w.Next()
			if err != nil {
				t.Fatal(err)
			}
			if got := string(ev.Action) + " " + ev.Service.Name + "/" + ev.Service.Nodes[0].ID; got != want {
				t.Fatalf("event %q, want %q", got, want)
			}
		}
	}
}

func TestNotifyCopiesTheService(t *testing.T) {
	ctx := testCtx(t)
	var s eventq.Set
	w := s.Watch(ctx, "")
	defer w.Stop()
	orig := svc("a", "1")
	s.Notify(resolver.Create, orig)
	ev, err := w.Next()
	if err != nil {
		t.Fatal(err)
	}
	ev.Service.Nodes[0].ID = "changed"
	if orig.Nodes[0].ID != "1" {
		t.Fatal("the event shares its service with the caller")
	}
}

func TestCloseStopsWatchersNowAndLater(t *testing.T) {
	ctx := testCtx(t)
	var s eventq.Set
	before := s.Watch(ctx, "")
	s.Close()
	after := s.Watch(ctx, "")
	for _, w := range []resolver.Watcher{before, after} {
		if _, err := w.Next(); !errors.Is(err, resolver.ErrWatcherStopped) {
			t.Fatalf("Next after Close = %v, want ErrWatcherStopped", err)
		}
	}
	if n := s.Len(); n != 0 {
		t.Fatalf("closed set holds %d watchers", n)
	}
}

func TestStopEndsAWaitingNext(t *testing.T) {
	ctx := testCtx(t)
	var s eventq.Set
	w := s.Watch(ctx, "")
	done := make(chan error, 1)
	go func() {
		_, err := w.Next()
		done <- err
	}()
	w.Stop()
	select {
	case err := <-done:
		if !errors.Is(err, resolver.ErrWatcherStopped) {
			t.Fatalf("Next after Stop = %v, want ErrWatcherStopped", err)
		}
	case <-ctx.Done():
		t.Fatal("Next did not return after Stop")
	}
}
