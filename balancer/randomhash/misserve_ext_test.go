package randomhash_test

import (
	"net"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/microgrpc/microgrpc/balancer/randomhash"
	pb "github.com/microgrpc/microgrpc/proto/greeter"
	"github.com/microgrpc/microgrpc/resolver"
)

// addOther starts a gRPC server that is not a greeter (only the health
// service, SERVING for "", as etcd's own port) and registers it as a
// greeter node without a health service name, as a well-formed record
// pointing at the wrong port would.
func (f *fleet) addOther(id string) *serverStats {
	f.t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.t.Fatal(err)
	}
	st := &serverStats{}
	srv := grpc.NewServer(grpc.StatsHandler(st))
	healthpb.RegisterHealthServer(srv, health.NewServer())
	go srv.Serve(lis)
	f.t.Cleanup(srv.Stop)
	if err := f.reg.Register(ctx(f.t), &resolver.Service{Name: "greeter",
		Nodes: []resolver.Node{{ID: id, Address: lis.Addr().String()}}}); err != nil {
		f.t.Fatal(err)
	}
	return st
}

// load makes calls from goroutines and returns the errors.
func load(t *testing.T, c pb.GreeterClient, goroutines, calls int) []error {
	t.Helper()
	var mu sync.Mutex
	var errs []error
	var wg sync.WaitGroup
	for range goroutines {
		wg.Go(func() {
			for range calls {
				if _, err := c.Hello(ctx(t), &pb.Request{Name: "x"}); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	return errs
}

// A node that answers "unknown service greeter.Greeter" under a greeter
// record is no greeter: the calls it gets are sent to another node (it did
// no work), and it is ejected, so that it gets no more.
func TestNodeWithoutTheServiceGetsNoCalls(t *testing.T) {
	f := newFleet(t)
	for _, id := range []string{"g1", "g2", "g3"} {
		f.add(id, "", nil)
	}
	other := f.addOther("other")
	c := f.client()
	// The greeters take calls (their service health answered), and the
	// other server is connected.
	for id := range f.backends {
		if _, err := c.Hello(ctx(t), &pb.Request{}, grpc.WaitForReady(true), randomhash.FilterNode(id)); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "a connection to the other server", func() bool { return other.conns.Load() > 0 })

	errs := load(t, c, 8, 100)
	reachedOther := other.calls.Load()
	if len(errs) > 0 {
		t.Fatalf("%d of 800 calls failed (the other server got %d), first: %v", len(errs), reachedOther, errs[0])
	}
	if reachedOther == 0 {
		t.Fatal("the other server got no call: the test proved nothing")
	}
	errs = load(t, c, 8, 100)
	if len(errs) > 0 {
		t.Fatalf("after ejection %d calls failed, first: %v", len(errs), errs[0])
	}
	if n := other.calls.Load(); n != reachedOther {
		t.Fatalf("after ejection the other server got %d more calls", n-reachedOther)
	}
	t.Logf("the other server got %d calls, all sent on to greeters", reachedOther)
}

// A stream to such a node fails (its messages are not kept for another
// attempt), but the node is ejected: the calls that follow go elsewhere.
func TestStreamToNodeWithoutTheServiceEjectsIt(t *testing.T) {
	f := newFleet(t)
	f.add("g1", "", nil)
	other := f.addOther("other")
	cc := f.conn()
	cc.Connect()
	c := pb.NewGreeterClient(cc)
	// g1 takes calls (its service health answered), and other is connected.
	if _, err := c.Hello(ctx(t), &pb.Request{}, grpc.WaitForReady(true), randomhash.FilterNode("g1")); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a connection to the other server", func() bool { return other.conns.Load() > 0 })
	stream, err := c.HelloStream(ctx(t), &pb.Request{Name: "x", Count: 1}, grpc.WaitForReady(true),
		randomhash.FilterNode("other"))
	if err == nil {
		_, err = stream.Recv()
	}
	if status.Code(err) != codes.Unimplemented {
		t.Fatalf("stream to the other server: %v, want Unimplemented", err)
	}
	before := other.calls.Load()
	if errs := load(t, c, 4, 50); len(errs) > 0 {
		t.Fatalf("%d calls failed, first: %v", len(errs), errs[0])
	}
	if n := other.calls.Load(); n != before {
		t.Fatalf("after the stream the other server got %d more calls", n-before)
	}
}

// Unimplemented for a method that the nodes really lack is the caller's
// error: not retried on other nodes, and no node is ejected for it.
func TestUnknownMethodIsNotRetried(t *testing.T) {
	f := newFleet(t)
	for _, id := range []string{"g1", "g2", "g3"} {
		f.add(id, "", nil)
	}
	cc := f.conn()
	c := pb.NewGreeterClient(cc)
	waitAll(t, c, "g1", "g2", "g3")
	total := func() int32 {
		n := int32(0)
		for _, b := range f.backends {
			n += b.stats.calls.Load()
		}
		return n
	}
	before := total()
	err := cc.Invoke(ctx(t), "/greeter.Greeter/Missing", &pb.Request{}, &pb.Response{})
	if status.Code(err) != codes.Unimplemented {
		t.Fatalf("got %v, want Unimplemented", err)
	}
	if n := total() - before; n != 1 {
		t.Fatalf("the call reached %d nodes, want 1 (no retry)", n)
	}
	// No node was ejected: all three still get calls.
	waitAll(t, c, "g1", "g2", "g3")
}
