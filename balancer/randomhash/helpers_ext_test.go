package randomhash_test

// These tests use grpc-go, this package and the resolver packages only, as
// a plain grpc-go client (no micro import) would.

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/stats"

	"github.com/microgrpc/microgrpc/balancer/randomhash"
	"github.com/microgrpc/microgrpc/internal/greetertest"
	pb "github.com/microgrpc/microgrpc/proto/greeter"
	"github.com/microgrpc/microgrpc/resolver"
	"github.com/microgrpc/microgrpc/resolver/memory"
)

const defaultTestTimeout = 10 * time.Second

// backend is one greeter server registered as a node.
type backend struct {
	id     string
	srv    *grpc.Server
	health *health.Server
	addr   string
	// stats counts the server's connections and calls, as the server sees
	// them.
	stats serverStats

	mu   sync.Mutex
	hits int
	// fail, when set, makes Hello fail with its error.
	fail func(ctx context.Context) error
}

func (b *backend) count() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.hits
}

type fleet struct {
	t        testing.TB
	reg      resolver.Registry
	backends map[string]*backend
}

func newFleet(t testing.TB) *fleet {
	return &fleet{t: t, reg: memory.NewRegistry(), backends: map[string]*backend{}}
}

// add starts a backend and registers it with version and metadata.
func (f *fleet) add(id, version string, md map[string]string) *backend {
	f.t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.t.Fatal(err)
	}
	b := &backend{id: id, health: health.NewServer(), addr: lis.Addr().String()}
	b.health.SetServingStatus("greeter", healthpb.HealthCheckResponse_SERVING) // as micro does
	b.serve(lis)
	f.t.Cleanup(func() { b.srv.Stop() })
	f.backends[id] = b
	err = f.reg.Register(ctx(f.t), &resolver.Service{Name: "greeter", Version: version,
		Nodes: []resolver.Node{{ID: id, Address: b.addr, Metadata: md, HealthService: "greeter"}}})
	if err != nil {
		f.t.Fatal(err)
	}
	return b
}

// serve starts b's gRPC server on lis.
func (b *backend) serve(lis net.Listener) {
	b.srv = grpc.NewServer(grpc.StatsHandler(&b.stats))
	pb.RegisterGreeterServer(b.srv, &greetertest.Server{Node: b.id, Hook: func(ctx context.Context, _ *pb.Request) error {
		b.mu.Lock()
		b.hits++
		fail := b.fail
		b.mu.Unlock()
		if fail != nil {
			return fail(ctx)
		}
		return nil
	}})
	healthpb.RegisterHealthServer(b.srv, b.health)
	go b.srv.Serve(lis)
}

// restart stops b's server (its clients see their connections close) and
// starts a new one on the same address.
func (b *backend) restart(t *testing.T) {
	t.Helper()
	b.srv.Stop()
	lis, err := net.Listen("tcp", b.addr)
	if err != nil {
		t.Fatalf("listen again on %s: %v", b.addr, err)
	}
	b.serve(lis)
}

// serverStats is a server's stats handler that counts its open
// connections and the greeter calls it received (all of them: also those
// for which it has no handler).
type serverStats struct {
	conns, calls atomic.Int32
}

func (s *serverStats) TagRPC(c context.Context, _ *stats.RPCTagInfo) context.Context { return c }

func (s *serverStats) HandleRPC(_ context.Context, st stats.RPCStats) {
	if h, ok := st.(*stats.InHeader); ok && strings.HasPrefix(h.FullMethod, "/"+pb.Greeter_ServiceDesc.ServiceName+"/") {
		s.calls.Add(1)
	}
}

func (s *serverStats) TagConn(c context.Context, _ *stats.ConnTagInfo) context.Context { return c }

func (s *serverStats) HandleConn(_ context.Context, st stats.ConnStats) {
	switch st.(type) {
	case *stats.ConnBegin:
		s.conns.Add(1)
	case *stats.ConnEnd:
		s.conns.Add(-1)
	}
}

// client dials the fleet as a plain grpc-go client with the exported
// dial options.
func (f *fleet) client(opts ...randomhash.ConfigOption) pb.GreeterClient {
	f.t.Helper()
	return pb.NewGreeterClient(f.conn(opts...))
}

// conn is client's ClientConn.
func (f *fleet) conn(opts ...randomhash.ConfigOption) *grpc.ClientConn {
	f.t.Helper()
	dopts := append(randomhash.DialOptions(opts...),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithResolvers(resolver.NewBuilder(f.reg, resolver.WithCoalesceWindow(0))))
	cc, err := grpc.NewClient("memory:///greeter", dopts...)
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { cc.Close() })
	return cc
}

// waitAll calls until every backend in ids has answered, so that all are
// READY before a measurement starts.
func waitAll(t testing.TB, c pb.GreeterClient, ids ...string) {
	t.Helper()
	seen := map[string]bool{}
	c2 := ctx(t)
	for len(seen) < len(ids) {
		rsp, err := c.Hello(c2, &pb.Request{Name: "warm"}, grpc.WaitForReady(true))
		if err != nil {
			t.Fatalf("warm-up: %v", err)
		}
		seen[rsp.GetNode()] = true
	}
}

// reached makes n calls that wait for a node and returns the nodes that
// answered them.
func reached(t *testing.T, c pb.GreeterClient, n int) map[string]bool {
	t.Helper()
	seen := map[string]bool{}
	for range n {
		rsp, err := c.Hello(ctx(t), &pb.Request{Name: "x"}, grpc.WaitForReady(true))
		if err != nil {
			t.Fatal(err)
		}
		seen[rsp.GetNode()] = true
	}
	return seen
}

func ctx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), defaultTestTimeout)
	t.Cleanup(cancel)
	return c
}

func ids(n int) []string {
	var out []string
	for i := range n {
		out = append(out, fmt.Sprint("n", i))
	}
	return out
}
