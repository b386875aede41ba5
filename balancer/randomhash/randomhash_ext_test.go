package randomhash_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/microgrpc/microgrpc/balancer/randomhash"
	pb "github.com/microgrpc/microgrpc/proto/greeter"
)

func TestUniformDistributionChiSquare(t *testing.T) {
	f := newFleet(t)
	for _, id := range ids(5) {
		f.add(id, "", nil)
	}
	c := f.client(randomhash.WithPick(randomhash.PickRandom))
	waitAll(t, c, ids(5)...)
	counts := map[string]int{}
	const calls = 10000
	for range calls {
		rsp, err := c.Hello(ctx(t), &pb.Request{})
		if err != nil {
			t.Fatal(err)
		}
		counts[rsp.GetNode()]++
	}
	exp := float64(calls) / 5
	chi := 0.0
	for _, id := range ids(5) {
		d := float64(counts[id]) - exp
		chi += d * d / exp
	}
	// Critical value of chi-square with 4 degrees of freedom at p=0.001.
	if chi > 18.467 {
		t.Fatalf("chi-square %.2f > 18.467: distribution %v is not uniform", chi, counts)
	}
	t.Logf("counts %v chi-square %.2f", counts, chi)
}

// A backend that dies abruptly fails no call that it had not begun to
// answer: those are retried on another node. A call whose response
// headers had arrived when the connection broke cannot be retried (gRPC
// allows no retry once the server has answered, since the handler may
// have run), so at most one per caller may fail that way, with the
// connection's read error; it is rare (1 in about 3,000 calls, once in
// many runs).
func TestKilledBackendNoCallFails(t *testing.T) {
	f := newFleet(t)
	for _, id := range ids(3) {
		f.add(id, "", nil)
	}
	c := f.client()
	waitAll(t, c, ids(3)...)

	var calls, failures, cut atomic.Int64
	var firstErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	const callers = 8
	for range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				cctx, cancel := context.WithTimeout(context.Background(), defaultTestTimeout)
				_, err := c.Hello(cctx, &pb.Request{})
				cancel()
				calls.Add(1)
				switch {
				case err == nil:
				case status.Code(err) == codes.Unavailable && strings.Contains(err.Error(), "error reading from server"):
					cut.Add(1)
				default:
					failures.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
				}
			}
		}()
	}
	time.Sleep(300 * time.Millisecond)
	// Abruptly: listener and connections closed, nothing deregistered.
	f.backends["n1"].srv.Stop()
	time.Sleep(700 * time.Millisecond)
	close(stop)
	wg.Wait()
	if failures.Load() != 0 {
		t.Fatalf("%d of %d calls failed after a backend died; first: %v", failures.Load(), calls.Load(), firstErr.Load())
	}
	if n := cut.Load(); n > callers {
		t.Fatalf("%d calls were cut mid-answer, more than the %d in flight", n, callers)
	}
	t.Logf("%d calls, none failed, %d cut mid-answer", calls.Load(), cut.Load())
}

// A backend answering UNAVAILABLE to everything: every call still succeeds,
// on another node, and no call is retried onto a node that already failed
// it.
func TestRetryGoesToAnotherNode(t *testing.T) {
	f := newFleet(t)
	bad := f.add("bad", "", nil)
	var mu sync.Mutex
	badCalls := map[string]int{}
	bad.fail = func(ctx context.Context) error {
		md, _ := metadata.FromIncomingContext(ctx)
		if id := md.Get("call-id"); len(id) == 1 { // not a warm-up call
			mu.Lock()
			badCalls[id[0]]++
			mu.Unlock()
		}
		return status.Error(codes.Unavailable, "bad node")
	}
	f.add("good1", "", nil)
	f.add("good2", "", nil)
	// Ejection off, so that the bad node keeps being picked first and
	// every retry is exercised. (Few enough calls that retry throttling,
	// which would rightly stop retries against a fleet failing this much,
	// does not start.)
	c := f.client(randomhash.WithEjection(0, time.Second, time.Second))
	waitAll(t, c, "good1", "good2")
	const calls = 120
	for i := range calls {
		cctx := metadata.AppendToOutgoingContext(ctx(t), "call-id", fmt.Sprint(i))
		rsp, err := c.Hello(cctx, &pb.Request{})
		if err != nil {
			t.Fatalf("call %d failed: %v", i, err)
		}
		if rsp.GetNode() == "bad" {
			t.Fatalf("call %d answered by the bad node", i)
		}
	}
	retried := len(badCalls)
	if retried == 0 {
		t.Fatal("the bad node was never picked; the test proves nothing")
	}
	for id, n := range badCalls {
		if n > 1 {
			t.Fatalf("call %s reached the bad node %d times: a retry went back to a node that failed it", id, n)
		}
	}
	t.Logf("%d of %d calls hit the bad node first; all %d retries landed on another node", retried, calls, retried)
}

// With the default config (ejection on) a node failing every call costs
// nothing: retries cover its first failures, then it is ejected.
func TestUnavailableBackendDefaultConfig(t *testing.T) {
	f := newFleet(t)
	bad := f.add("bad", "", nil)
	bad.fail = func(context.Context) error { return status.Error(codes.Unavailable, "bad node") }
	f.add("good1", "", nil)
	f.add("good2", "", nil)
	c := f.client()
	waitAll(t, c, "good1", "good2")
	for i := range 1000 {
		if _, err := c.Hello(ctx(t), &pb.Request{}); err != nil {
			t.Fatalf("call %d failed: %v", i, err)
		}
	}
	if bad.count() == 0 {
		t.Fatal("the bad node was never tried")
	}
}

func TestOutlierEjection(t *testing.T) {
	f := newFleet(t)
	bad := f.add("bad", "", nil)
	bad.fail = func(context.Context) error { return status.Error(codes.Unavailable, "bad node") }
	f.add("good1", "", nil)
	f.add("good2", "", nil)
	c := f.client(randomhash.WithEjection(3, 10*time.Second, time.Minute))
	waitAll(t, c, "good1", "good2")
	for range 300 {
		if _, err := c.Hello(ctx(t), &pb.Request{}); err != nil {
			t.Fatal(err)
		}
	}
	// Without ejection the bad node would see about 100 first attempts.
	if n := bad.count(); n > 10 {
		t.Fatalf("ejected node still got %d attempts out of 300 calls", n)
	}
	t.Logf("bad node got %d attempts in 300 calls", bad.count())
}

func TestHashKeyStickyAndMovesMinimally(t *testing.T) {
	f := newFleet(t)
	for _, id := range ids(5) {
		f.add(id, "", nil)
	}
	c := f.client()
	waitAll(t, c, ids(5)...)
	owner := func(key string) string {
		rsp, err := c.Hello(ctx(t), &pb.Request{}, randomhash.WithHashKey(key))
		if err != nil {
			t.Fatal(err)
		}
		return rsp.GetNode()
	}
	const keys = 300
	before := map[string]string{}
	perNode := map[string]int{}
	for i := range keys {
		k := fmt.Sprint("user-", i)
		before[k] = owner(k)
		perNode[before[k]]++
		for range 3 {
			if again := owner(k); again != before[k] {
				t.Fatalf("key %s went to %s then %s", k, before[k], again)
			}
		}
	}
	if len(perNode) != 5 {
		t.Fatalf("keys spread over %v, want all 5 nodes", perNode)
	}
	f.add("n5", "", nil)
	waitAll(t, c, "n5")
	moved := 0
	for k, old := range before {
		now := owner(k)
		if now == old {
			continue
		}
		if now != "n5" {
			t.Fatalf("key %s moved between old nodes %s -> %s", k, old, now)
		}
		moved++
	}
	if frac := float64(moved) / keys; frac < 0.05 || frac > 0.35 {
		t.Fatalf("%.2f of keys moved to the new node, want about 1/6", frac)
	}
	t.Logf("%d of %d keys moved to the added node", moved, keys)
}

func TestHashRetryGoesToNextNode(t *testing.T) {
	f := newFleet(t)
	for _, id := range ids(3) {
		f.add(id, "", nil)
	}
	c := f.client(randomhash.WithEjection(0, time.Second, time.Second))
	waitAll(t, c, ids(3)...)
	rsp, err := c.Hello(ctx(t), &pb.Request{}, randomhash.WithHashKey("k"))
	if err != nil {
		t.Fatal(err)
	}
	first := rsp.GetNode()
	f.backends[first].fail = func(context.Context) error { return status.Error(codes.Unavailable, "down") }
	seen := map[string]bool{}
	for range 20 {
		rsp, err := c.Hello(ctx(t), &pb.Request{}, randomhash.WithHashKey("k"))
		if err != nil {
			t.Fatal(err)
		}
		seen[rsp.GetNode()] = true
	}
	if len(seen) != 1 || seen[first] {
		t.Fatalf("retries of key k went to %v; want always the same next node, not %s", seen, first)
	}
}

func TestFilters(t *testing.T) {
	f := newFleet(t)
	f.add("v1a", "v1", map[string]string{"zone": "a"})
	f.add("v1b", "v1", map[string]string{"zone": "b"})
	f.add("v2a", "v2", map[string]string{"zone": "a"})
	c := f.client(randomhash.WithPick(randomhash.PickRandom)) // every matching node must get calls
	waitAll(t, c, "v1a", "v1b", "v2a")
	tests := []struct {
		name string
		opts []grpc.CallOption
		want map[string]bool
	}{
		{"version v2", []grpc.CallOption{randomhash.FilterVersion("v2")}, map[string]bool{"v2a": true}},
		{"version v1", []grpc.CallOption{randomhash.FilterVersion("v1")}, map[string]bool{"v1a": true, "v1b": true}},
		{"zone a", []grpc.CallOption{randomhash.FilterMetadata("zone", "a")}, map[string]bool{"v1a": true, "v2a": true}},
		{"v1 in zone b", []grpc.CallOption{randomhash.FilterVersion("v1"), randomhash.FilterMetadata("zone", "b")}, map[string]bool{"v1b": true}},
		{"node v1b", []grpc.CallOption{randomhash.FilterNode("v1b")}, map[string]bool{"v1b": true}},
		{"node v2a in zone a", []grpc.CallOption{randomhash.FilterNode("v2a"), randomhash.FilterMetadata("zone", "a")}, map[string]bool{"v2a": true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := map[string]bool{}
			for range 60 {
				rsp, err := c.Hello(ctx(t), &pb.Request{}, tt.opts...)
				if err != nil {
					t.Fatal(err)
				}
				got[rsp.GetNode()] = true
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Fatalf("calls went to %v, want %v", got, tt.want)
			}
		})
	}
	_, err := c.Hello(ctx(t), &pb.Request{}, randomhash.FilterVersion("v9"))
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "version=v9") {
		t.Fatalf("no matching node: %v, want UNAVAILABLE naming the filter", err)
	}
	_, err = c.Hello(ctx(t), &pb.Request{}, randomhash.FilterNode("nope"))
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "node=nope") {
		t.Fatalf("unknown node: %v, want UNAVAILABLE naming the filter", err)
	}
}

// A node whose health turns NOT_SERVING (as a micro service does when it
// starts shutting down) stops getting calls while its connection is open.
func TestNotServingNodeGetsNoCalls(t *testing.T) {
	f := newFleet(t)
	a := f.add("a", "", nil)
	f.add("b", "", nil)
	c := f.client()
	waitAll(t, c, "a", "b")
	a.health.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	// Wait for the health watch to reach the client.
	deadline := time.Now().Add(defaultTestTimeout)
	for {
		before := a.count()
		for range 50 {
			if _, err := c.Hello(ctx(t), &pb.Request{}); err != nil {
				t.Fatal(err)
			}
		}
		if a.count() == before {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("NOT_SERVING node still receives calls")
		}
	}
}
