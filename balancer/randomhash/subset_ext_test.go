package randomhash_test

import (
	"fmt"
	"maps"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/microgrpc/microgrpc/balancer/randomhash"
	pb "github.com/microgrpc/microgrpc/proto/greeter"
	"github.com/microgrpc/microgrpc/resolver"
)

// deadAddr is a loopback address nothing listens on: connections to it
// are refused.
func deadAddr(t *testing.T) string {
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
