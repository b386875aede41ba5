package randomhash_test

import (
	"context"
	"fmt"
	"maps"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/microgrpc/microgrpc/balancer/randomhash"
	pb "github.com/microgrpc/microgrpc/proto/greeter"
	"github.com/microgrpc/microgrpc/resolver"
)

// deadAddr is a loopback address nothing listens on: connections to it
// are refused.
func deadAddr(t testing.TB) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	return addr
}

// addDead registers n nodes whose connections are refused.
func (f *fleet) addDead(n int) {
	f.t.Helper()
	for i := range n {
		err := f.reg.Register(ctx(f.t), &resolver.Service{Name: "greeter", Version: "v1",
			Nodes: []resolver.Node{{ID: fmt.Sprint("dead", i), Address: deadAddr(f.t), HealthService: "greeter"}}})
		if err != nil {
			f.t.Fatal(err)
		}
	}
}

// A client of a service larger than the subset size talks to that many
// nodes, not to all.
func TestSubsetBoundsTheNodesAClientUses(t *testing.T) {
	f := newFleet(t)
	for _, id := range ids(24) {
		f.add(id, "v1", nil)
	}
	c := f.client(randomhash.WithSubsetSize(6))
	seen := reached(t, c, 300)
	if len(seen) != 6 {
		t.Fatalf("300 calls reached %d nodes, want the subset's 6: %v", len(seen), seen)
	}
	// A second client picks its own subset: between them more nodes get
	// calls (the chance that two random 6-of-24 subsets are equal is 1 in
	// 134596).
	c2 := f.client(randomhash.WithSubsetSize(6))
	maps.Copy(seen, reached(t, c2, 300))
	if len(seen) <= 6 {
		t.Fatalf("two clients reached %d nodes between them", len(seen))
	}
}

// When most of a large fleet is gone, the subset searches it: members that
// fail to connect are replaced, in widening rounds, and even a fail-fast
// call waits while untried nodes are left instead of failing at once.
func TestSubsetFindsTheLiveNodeAmongDeadOnes(t *testing.T) {
	f := newFleet(t)
	f.addDead(199)
	f.add("live", "v1", nil)
	c := f.client(randomhash.WithSubsetSize(8))
	start := time.Now()
	rsp, err := c.Hello(ctx(t), &pb.Request{Name: "x"}) // fail-fast
	if err != nil {
		t.Fatalf("first call: %v", err)
	}
	if rsp.GetNode() != "live" {
		t.Fatalf("answered by %q", rsp.GetNode())
	}
	t.Logf("first call found the live node of 200 in %v", time.Since(start))
}

// A fleet that is all gone fails fail-fast calls with Unavailable once
// every node was tried, rather than making them wait for ever.
func TestSubsetOfADeadFleetFails(t *testing.T) {
	f := newFleet(t)
	f.addDead(40)
	c := f.client(randomhash.WithSubsetSize(4))
	_, err := c.Hello(ctx(t), &pb.Request{Name: "x"})
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("got %v, want Unavailable", err)
	}
}

// A hash key goes to the same node from every client, whatever subsets
// they hold: the key's node among all nodes joins the subset.
func TestSubsetKeepsHashKeysConsistentAcrossClients(t *testing.T) {
	f := newFleet(t)
	for _, id := range ids(30) {
		f.add(id, "v1", nil)
	}
	a, b := f.client(randomhash.WithSubsetSize(3)), f.client(randomhash.WithSubsetSize(3))
	nodes := map[string]bool{}
	for i := range 12 {
		key := fmt.Sprint("user-", i)
		var got [2]string
		for j, c := range []pb.GreeterClient{a, b} {
			rsp, err := c.Hello(ctx(t), &pb.Request{Name: "x"}, grpc.WaitForReady(true), randomhash.WithHashKey(key))
			if err != nil {
				t.Fatal(err)
			}
			got[j] = rsp.GetNode()
		}
		if got[0] != got[1] {
			t.Fatalf("key %s went to %s from one client, %s from the other", key, got[0], got[1])
		}
		nodes[got[0]] = true
	}
	if len(nodes) < 4 {
		t.Fatalf("12 keys went to %d nodes: hashing is not spreading them", len(nodes))
	}
}

// A filter that no node of the subset matches connects a node that does.
func TestSubsetConnectsANodeAFilterNeeds(t *testing.T) {
	f := newFleet(t)
	for _, id := range ids(30) {
		f.add(id, "v1", nil)
	}
	f.add("canary", "v2", nil)
	c := f.client(randomhash.WithSubsetSize(3))
	waitAll(t, c) // the subset is up
	for range 3 {
		rsp, err := c.Hello(ctx(t), &pb.Request{Name: "x"}, randomhash.FilterVersion("v2"))
		if err != nil {
			t.Fatal(err)
		}
		if rsp.GetNode() != "canary" {
			t.Fatalf("v2 call answered by %q", rsp.GetNode())
		}
	}
}

// Members that leave the registry are replaced: the client keeps talking
// to a subset of the full size.
func TestSubsetRefillsWhenMembersLeave(t *testing.T) {
	f := newFleet(t)
	for _, id := range ids(20) {
		f.add(id, "v1", nil)
	}
	c := f.client(randomhash.WithSubsetSize(4))
	first := reached(t, c, 200)
	if len(first) != 4 {
		t.Fatalf("reached %v, want 4 nodes", first)
	}
	for id := range first {
		b := f.backends[id]
		if err := f.reg.Deregister(ctx(t), &resolver.Service{Name: "greeter", Version: "v1",
			Nodes: []resolver.Node{{ID: id, Address: b.addr}}}); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(defaultTestTimeout)
	for {
		now := reached(t, c, 200)
		gone := 0
		for id := range now {
			if first[id] {
				gone++
			}
		}
		if gone == 0 && len(now) == 4 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the subset left, calls reach %v", now)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// fleetOf starts a fleet of n v1 nodes.
func fleetOf(t *testing.T, n int) *fleet {
	f := newFleet(t)
	for _, id := range ids(n) {
		f.add(id, "v1", nil)
	}
	return f
}

// reachedSubset makes 100 calls and returns the nodes they reached, which
// must be size.
func reachedSubset(t *testing.T, c pb.GreeterClient, size int) map[string]bool {
	t.Helper()
	seen := reached(t, c, 100)
	if len(seen) != size {
		t.Fatalf("100 calls reached %d nodes, want %d: %v", len(seen), size, seen)
	}
	return seen
}

// connected counts the backends that hold a connection, as they see it.
func (f *fleet) connected() int {
	n := 0
	for _, b := range f.backends {
		if b.stats.conns.Load() > 0 {
			n++
		}
	}
	return n
}

// A hash key's node that blipped (stopped, then back at its address) gets
// the key again once its failure expires, as it does from a fresh client:
// every client sends a key to the same node.
func TestSubsetHashKeyNodeBackAfterABlip(t *testing.T) {
	f := fleetOf(t, 40)
	const key = "user-7"
	hello := func(c pb.GreeterClient) string {
		t.Helper()
		rsp, err := c.Hello(ctx(t), &pb.Request{Name: "x"}, grpc.WaitForReady(true), randomhash.WithHashKey(key))
		if err != nil {
			t.Fatalf("call with key: %v", err)
		}
		return rsp.GetNode()
	}
	old := f.client(randomhash.WithSubsetSize(4))
	home := hello(old)
	if fresh := hello(f.client(randomhash.WithSubsetSize(4))); fresh != home {
		t.Fatalf("key went to %s from one client, %s from a fresh one", home, fresh)
	}
	b := f.backends[home]
	b.srv.Stop()
	eventually(t, "the key to move off its stopped node", func() bool { return hello(old) != home })
	b.restart(t)
	start := time.Now()
	eventually(t, "the key back on its node "+home, func() bool { return hello(old) == home })
	t.Logf("the key was back on %s %v after the restart", home, time.Since(start))
	if fresh := hello(f.client(randomhash.WithSubsetSize(4))); fresh != home {
		t.Fatalf("after the blip a fresh client sends the key to %s, the old one to %s", fresh, home)
	}
}

// A canary that blipped is connected again once its failure expires:
// FilterVersion calls fail while it is down, and succeed again after.
func TestSubsetCanaryBackAfterABlip(t *testing.T) {
	f := newFleet(t)
	for _, id := range ids(39) {
		f.add(id, "v1", nil)
	}
	canary := f.add("canary", "v2", nil)
	c := f.client(randomhash.WithSubsetSize(4))
	v2 := func() error {
		rsp, err := c.Hello(ctx(t), &pb.Request{Name: "x"}, randomhash.FilterVersion("v2"))
		if err == nil && rsp.GetNode() != "canary" {
			t.Fatalf("v2 call answered by %s", rsp.GetNode())
		}
		return err
	}
	if err := v2(); err != nil {
		t.Fatalf("v2 call: %v", err)
	}
	canary.srv.Stop()
	eventually(t, "v2 calls to fail while the canary is down", func() bool { return status.Code(v2()) == codes.Unavailable })
	canary.restart(t)
	start := time.Now()
	eventually(t, "v2 calls to succeed again", func() bool { return v2() == nil })
	t.Logf("v2 calls succeeded %v after the restart", time.Since(start))
}

// One second of fleet-wide NOT_SERVING (a shared dependency down) grows
// the subset only up to a cap, and once the nodes serve again it shrinks
// back to its size: the clients do not stay connected to the whole fleet.
func TestSubsetShrinksBackAfterFleetWideNotServing(t *testing.T) {
	f := fleetOf(t, 40)
	c := f.client(randomhash.WithSubsetSize(4))
	reachedSubset(t, c, 4)
	for _, b := range f.backends {
		b.health.SetServingStatus("greeter", healthpb.HealthCheckResponse_NOT_SERVING)
	}
	most := 0
	for end := time.Now().Add(time.Second); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		most = max(most, f.connected())
	}
	t.Logf("at most %d nodes connected while none served", most)
	if most <= 4 {
		t.Fatalf("while no node served, at most %d nodes were connected: no replacement was tried", most)
	}
	for _, b := range f.backends {
		b.health.SetServingStatus("greeter", healthpb.HealthCheckResponse_SERVING)
	}
	eventually(t, "the subset back to 4 connected nodes", func() bool { return f.connected() == 4 })
	reachedSubset(t, c, 4)
	if most > 8 {
		t.Fatalf("while no node served, %d nodes were connected, want at most 8 (twice the size)", most)
	}
}

// An ejected member is replaced at once, and dropped once the replacement
// serves: the client stays at the subset's size.
func TestSubsetReplacesAnEjectedMember(t *testing.T) {
	f := fleetOf(t, 40)
	c := f.client(randomhash.WithSubsetSize(4))
	seen := reachedSubset(t, c, 4)
	var bad *backend
	for id := range seen {
		bad = f.backends[id]
		break
	}
	unavailable := func(context.Context) error { return status.Error(codes.Unavailable, "down") }
	bad.mu.Lock()
	bad.fail = unavailable
	bad.mu.Unlock()
	eventually(t, "calls to reach 4 nodes besides the ejected one", func() bool {
		others := reached(t, c, 100)
		delete(others, bad.id)
		return len(others) == 4
	})
	bad.mu.Lock()
	bad.fail = nil
	bad.mu.Unlock()
	eventually(t, "the subset back to 4 connected nodes", func() bool { return f.connected() == 4 })
}

// Trimming keeps the nodes hash keys went to: after a fleet-wide
// NOT_SERVING each key still goes to the node a fresh client sends it to,
// and the client holds no more than the size, or the key nodes.
func TestSubsetTrimKeepsHashKeyNodes(t *testing.T) {
	f := fleetOf(t, 40)
	keys := []string{"a", "b", "c"}
	hello := func(c pb.GreeterClient, key string) string {
		t.Helper()
		rsp, err := c.Hello(ctx(t), &pb.Request{Name: "x"}, grpc.WaitForReady(true), randomhash.WithHashKey(key))
		if err != nil {
			t.Fatalf("call with key %s: %v", key, err)
		}
		return rsp.GetNode()
	}
	c := f.client(randomhash.WithSubsetSize(4))
	home := map[string]string{}
	keyNodes := map[string]bool{}
	for _, k := range keys {
		home[k] = hello(c, k)
		keyNodes[home[k]] = true
	}
	for _, b := range f.backends {
		b.health.SetServingStatus("greeter", healthpb.HealthCheckResponse_NOT_SERVING)
	}
	eventually(t, "more nodes connected while none serves", func() bool { return f.connected() > max(4, len(keyNodes)) })
	for _, b := range f.backends {
		b.health.SetServingStatus("greeter", healthpb.HealthCheckResponse_SERVING)
	}
	eventually(t, "the subset back to its size", func() bool { return f.connected() == max(4, len(keyNodes)) })
	for id := range keyNodes {
		if f.backends[id].stats.conns.Load() == 0 {
			t.Errorf("key node %s was dropped", id)
		}
	}
	fresh := f.client(randomhash.WithSubsetSize(4))
	for _, k := range keys {
		if got, want := hello(c, k), hello(fresh, k); got != home[k] || want != home[k] {
			t.Errorf("key %s: went to %s before, now %s, from a fresh client %s", k, home[k], got, want)
		}
	}
}
