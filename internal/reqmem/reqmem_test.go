package reqmem

import (
	"context"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc/stats"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// A call reserves the largest request at Begin, keeps what its request
// turned out to be, and gives it all back at End; a call that finds no
// room waits in turn, and one whose context ends while waiting takes
// nothing.
func TestGateReservesWaitsAndReleases(t *testing.T) {
	g := New(10, 4)
	call := func() context.Context { return g.TagRPC(context.Background(), &stats.RPCTagInfo{}) }
	a, b := call(), call()
	g.HandleRPC(a, &stats.Begin{})
	g.HandleRPC(b, &stats.Begin{})
	if got := g.Used(); got != 8 {
		t.Fatalf("two calls reserved %d, want 8", got)
	}
	g.HandleRPC(a, &stats.InPayload{Length: 1})
	if got := g.Used(); got != 5 {
		t.Fatalf("after a's 1-byte request: %d reserved, want 5", got)
	}
	// c fits (5+4 <= 10); d must wait for room.
	c, d := call(), call()
	g.HandleRPC(c, &stats.Begin{})
	admitted := make(chan struct{})
	go func() {
		g.HandleRPC(d, &stats.Begin{})
		close(admitted)
	}()
	select {
	case <-admitted:
		t.Fatal("d was admitted with 9 of 10 reserved")
	case <-time.After(50 * time.Millisecond):
	}
	g.HandleRPC(b, &stats.End{})
	select {
	case <-admitted:
	case <-time.After(5 * time.Second):
		t.Fatal("d still waits after b ended")
	}
	if got := g.Used(); got != 9 {
		t.Fatalf("a 1 + c 4 + d 4 = %d reserved, want 9", got)
	}
	// e waits, and gives up with its context: nothing stays reserved.
	ectx, cancel := context.WithCancel(call())
	done := make(chan struct{})
	go func() {
		g.HandleRPC(ectx, &stats.Begin{})
		close(done)
	}()
	time.Sleep(20 * time.Millisecond)
	cancel()
	<-done
	g.HandleRPC(ectx, &stats.End{})
	for _, x := range []context.Context{a, c, d} {
		g.HandleRPC(x, &stats.End{})
	}
	if got := g.Used(); got != 0 {
		t.Fatalf("after every call ended %d stay reserved", got)
	}
	// Streams that the client streams into are not gated.
	s := call()
	g.HandleRPC(s, &stats.Begin{IsClientStream: true})
	if got := g.Used(); got != 0 {
		t.Fatalf("a client stream reserved %d", got)
	}
}
