package micro_test

import (
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/microgrpc/microgrpc/internal/greetertest"
	"github.com/microgrpc/microgrpc/micro"
	pb "github.com/microgrpc/microgrpc/proto/greeter"
	"github.com/microgrpc/microgrpc/resolver/memory"
)

// An existing server, with its own interceptor and its own health service,
// is found through the registry, keeps its interceptor, and is deregistered
// when it stops.
func TestServeExistingServer(t *testing.T) {
	reg := memory.NewRegistry()
	var intercepted atomic.Int32
	existing := grpc.NewServer(grpc.UnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		intercepted.Add(1)
		return h(ctx, req)
	}))
	pb.RegisterGreeterServer(existing, &greetertest.Server{Node: "legacy"})
	ownHealth := health.NewServer()
	healthpb.RegisterHealthServer(existing, ownHealth)

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- micro.Serve(lis, existing, micro.WithName("legacy"), micro.WithRegistry(reg),
			micro.WithContext(ctx), micro.WithSignal(false), micro.WithDeregisterWait(0), micro.WithLogger(quietLogger))
	}()

	svcs := waitFound(t, reg, "legacy")
	if got := svcs[0].Nodes[0].Address; got != lis.Addr().String() {
		t.Fatalf("registered address %q, want the listener's %q", got, lis.Addr())
	}
	if hs := svcs[0].Nodes[0].HealthService; hs != "" {
		// Its own health service does not know the name "legacy".
		t.Fatalf("node registered with health service name %q, want none", hs)
	}
	if len(svcs[0].Endpoints) != 4 {
		t.Fatalf("endpoints from GetServiceInfo: %+v", svcs[0].Endpoints)
	}
	client := pb.NewGreeterClient(newClient(t, reg).Dial("legacy"))
	rsp, err := client.Hello(testCtx(t), &pb.Request{Name: "John"}, grpc.WaitForReady(true))
	if err != nil || rsp.GetNode() != "legacy" {
		t.Fatalf("Hello = %v, %v", rsp, err)
	}
	if intercepted.Load() == 0 {
		t.Fatal("the server's own interceptor did not run")
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve = %v", err)
		}
	case <-time.After(defaultTestTimeout):
		t.Fatal("Serve did not return")
	}
	waitNotFound(t, reg, "legacy")
}
