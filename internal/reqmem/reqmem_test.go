package reqmem

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/tap"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// dial returns a function that starts calls of one new connection.
func dial(t *testing.T, g *Gate) func() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	cctx := g.TagConn(ctx, &stats.ConnTagInfo{})
	return func() context.Context {
		ctx, err := g.Tap(cctx, &tap.Info{FullMethodName: "/greeter.Greeter/Hello"})
		if err != nil {
			panic(err)
		}
		return g.TagRPC(ctx, &stats.RPCTagInfo{})
	}
}

// begin runs Begin for ctx in a goroutine; the channel is closed once it
// returned (granted, or its context ended).
func begin(g *Gate, ctx context.Context) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		g.HandleRPC(ctx, &stats.Begin{})
		close(done)
	}()
	return done
}

func returned(done <-chan struct{}, within time.Duration) bool {
	select {
	case <-done:
		return true
	case <-time.After(within):
		return false
	}
}

func wantUsed(t *testing.T, g *Gate, want int64, when string) {
	t.Helper()
	if got := g.Used(); got != want {
		t.Fatalf("%s: %d reserved, want %d", when, got, want)
	}
}

// A call reserves the largest request at Begin, keeps what its request
// turned out to be, and gives it all back at End; a call that finds no
// room waits in turn, and one whose context ends while waiting takes
// nothing.
func TestGateReservesWaitsAndReleases(t *testing.T) {
	g := New(10, 4, time.Hour)
	a, b := dial(t, g)(), dial(t, g)()
	g.HandleRPC(a, &stats.Begin{})
	g.HandleRPC(b, &stats.Begin{})
	wantUsed(t, g, 8, "two calls")
	g.HandleRPC(a, &stats.InPayload{Length: 1})
	wantUsed(t, g, 5, "after a's 1-byte request")
	// c fits (5+4 <= 10); d must wait for room.
	c, d := dial(t, g)(), dial(t, g)()
	g.HandleRPC(c, &stats.Begin{})
	admitted := begin(g, d)
	if returned(admitted, 50*time.Millisecond) {
		t.Fatal("d was admitted with 9 of 10 reserved")
	}
	g.HandleRPC(b, &stats.End{})
	if !returned(admitted, 5*time.Second) {
		t.Fatal("d still waits after b ended")
	}
	wantUsed(t, g, 9, "a 1 + c 4 + d 4")
	// e waits, and gives up with its context: nothing stays reserved.
	ectx, cancel := context.WithCancel(dial(t, g)())
	done := begin(g, ectx)
	time.Sleep(20 * time.Millisecond)
	cancel()
	<-done
	g.HandleRPC(ectx, &stats.End{})
	for _, x := range []context.Context{a, c, d} {
		g.HandleRPC(x, &stats.End{})
	}
	wantUsed(t, g, 0, "after every call ended")
	if got := g.Peak(); got != 9 {
		t.Errorf("peak %d, want 9", got)
	}
	// Streams that the client streams into are not gated, nor are health
	// and reflection.
	g.HandleRPC(dial(t, g)(), &stats.Begin{IsClientStream: true})
	cctx := g.TagConn(context.Background(), &stats.ConnTagInfo{})
	for _, m := range []string{"/grpc.health.v1.Health/Check", "/grpc.health.v1.Health/Watch",
		"/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"} {
		ctx, _ := g.Tap(cctx, &tap.Info{FullMethodName: m})
		g.HandleRPC(ctx, &stats.Begin{})
	}
	wantUsed(t, g, 0, "after a client stream, health checks and reflection began")
}

// One connection holds at most a quarter of the budget: its further calls
// wait behind its own while another connection's go through.
func TestGateCapsAConnection(t *testing.T) {
	g := New(16, 2, time.Hour)
	hostile := dial(t, g)
	held := []context.Context{hostile(), hostile()}
	for _, c := range held {
		g.HandleRPC(c, &stats.Begin{})
	}
	third := hostile()
	waits := begin(g, third)
	if returned(waits, 50*time.Millisecond) {
		t.Fatal("a connection's third call was admitted past its 4 of 16")
	}
	other := dial(t, g)()
	if !returned(begin(g, other), time.Second) {
		t.Fatal("another connection's call waits behind the first one's")
	}
	wantUsed(t, g, 6, "two calls of one connection and one of another")
	g.HandleRPC(held[0], &stats.InPayload{Length: 1})
	g.HandleRPC(held[0], &stats.End{})
	if !returned(waits, 5*time.Second) {
		t.Fatal("the third call still waits after its connection's first ended")
	}
	for _, c := range []context.Context{held[1], third, other} {
		g.HandleRPC(c, &stats.End{})
	}
	wantUsed(t, g, 0, "after every call ended")
}

// A full budget held by connections that deliver no request is taken
// back, a request at a time, for a call of a connection that holds less,
// once they kept it waiting for the gate's wait; the calls taken back are
// cancelled with ErrWithdrawn. A connection that holds as much as the
// waiting one keeps its reservation.
func TestGateTakesBackFromStalledConnections(t *testing.T) {
	const wait = 100 * time.Millisecond
	g := New(8, 4, wait)
	idle1, idle2 := dial(t, g)(), dial(t, g)()
	var ended sync.WaitGroup
	defer ended.Wait()
	for _, c := range []context.Context{idle1, idle2} {
		g.HandleRPC(c, &stats.Begin{})
		// As grpc-go does: a call whose context ends fails its read, and
		// ends.
		ended.Go(func() {
			<-c.Done()
			g.HandleRPC(c, &stats.End{})
		})
	}
	start := time.Now()
	h := dial(t, g)
	hello := h()
	admitted := begin(g, hello)
	if returned(admitted, wait/2) {
		t.Fatal("admitted before the idle reservations waited the gate's wait")
	}
	if !returned(admitted, 5*time.Second) {
		t.Fatal("still waiting after the idle connections kept the gate waiting")
	}
	if took := time.Since(start); took < wait {
		t.Errorf("admitted after %v, before the wait of %v", took, wait)
	}
	var taken []context.Context
	for _, c := range []context.Context{idle1, idle2} {
		if c.Err() != nil {
			if !errors.Is(context.Cause(c), ErrWithdrawn) {
				t.Errorf("cause %v, want ErrWithdrawn", context.Cause(c))
			}
			taken = append(taken, c)
		}
	}
	if len(taken) != 1 {
		t.Fatalf("%d reservations taken back for one call, want 1", len(taken))
	}
	wantUsed(t, g, 8, "one idle call and the new one")
	// The call taken back gives nothing back twice.
	g.HandleRPC(taken[0], &stats.End{})
	wantUsed(t, g, 8, "after the call taken back ended again")
	// The other idle connection has kept the gate waiting for long: a
	// call of a third connection takes its reservation back at once.
	g.HandleRPC(hello, &stats.InPayload{Length: 4})
	start = time.Now()
	if !returned(begin(g, dial(t, g)()), 5*time.Second) || time.Since(start) > wait/2 {
		t.Fatalf("a third connection's call waited %v with a stalled connection holding room", time.Since(start))
	}
	for _, c := range []context.Context{idle1, idle2} {
		if c.Err() == nil {
			t.Error("an idle call was left its reservation")
		}
	}
}
