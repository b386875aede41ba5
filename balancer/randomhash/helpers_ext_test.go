package randomhash_test

// These tests use grpc-go, this package and the resolver packages only, as
// a plain grpc-go client (no micro import) would.

import (
	"context"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

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
	t        *testing.T
	reg      resolver.Registry
	backends map[string]*backend
}

func newFleet(t *testing.T) *fleet {
	return &fleet{t: t, reg: memory.NewRegistry(), backends: map[string]*backend{}}
}

// add starts a backend and registers it with version and metadata.
func (f *fleet) add(id, version string, md map[string]string) *backend {
	f.t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.t.Fatal(err)
	}
	b := &backend{id: id, srv: grpc.NewServer(), health: health.NewServer(), addr: lis.Addr().String()}
	pb.RegisterGreeterServer(b.srv, &greetertest.Server{Node: id, Hook: func(ctx context.Context, _ *pb.Request) error {
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
	b.health.SetServingStatus("greeter", healthpb.HealthCheckResponse_SERVING) // as micro does
	go b.srv.Serve(lis)
	f.t.Cleanup(b.srv.Stop)
	f.backends[id] = b
	err = f.reg.Register(ctx(f.t), &resolver.Service{Name: "greeter", Version: version,
		Nodes: []resolver.Node{{ID: id, Address: b.addr, Metadata: md, HealthService: "greeter"}}})
	if err != nil {
		f.t.Fatal(err)
	}
	return b
}

// client dials the fleet as a plain grpc-go client with the exported
// dial options.
func (f *fleet) client(opts ...randomhash.ConfigOption) pb.GreeterClient {
	f.t.Helper()
	dopts := append(randomhash.DialOptions(opts...),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithResolvers(resolver.NewBuilder(f.reg, resolver.WithCoalesceWindow(0))))
	cc, err := grpc.NewClient("memory:///greeter", dopts...)
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { cc.Close() })
	return pb.NewGreeterClient(cc)
}

// waitAll calls until every backend in ids has answered, so that all are
// READY before a measurement starts.
func waitAll(t *testing.T, c pb.GreeterClient, ids ...string) {
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

func ctx(t *testing.T) context.Context {
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
