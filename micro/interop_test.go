package micro_test

import (
	"net"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/naming/endpoints"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/microgrpc/microgrpc/internal/etcdtest"
	"github.com/microgrpc/microgrpc/internal/greetertest"
	"github.com/microgrpc/microgrpc/micro"
	pb "github.com/microgrpc/microgrpc/proto/greeter"
	"github.com/microgrpc/microgrpc/resolver"
	"github.com/microgrpc/microgrpc/resolver/memory"
)

// plainServer is a greeter on grpc-go alone, as a shop without microgrpc
// runs it: the standard health service answers for "" only.
func plainServer(t *testing.T, node string) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	pb.RegisterGreeterServer(s, &greetertest.Server{Node: node})
	healthpb.RegisterHealthServer(s, health.NewServer()) // "" is SERVING
	go s.Serve(lis)
	t.Cleanup(s.Stop)
	return lis.Addr().String()
}

// A plain grpc-go server registered with etcd's own endpoints.Manager is
// called through svc.Dial next to microgrpc nodes of the same service,
// and no longer once its endpoint is deleted.
func TestEndpointsManagerNodeThroughDial(t *testing.T) {
	srv, err := etcdtest.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	plugin := micro.WithRegistryPlugin("etcd", srv.Endpoint())
	want := map[string]bool{}
	for range 2 {
		want[startDefault(t, plugin).ID()] = true
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{srv.Endpoint()}, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	em, err := endpoints.NewManager(cli, "/micro/registry/greeter")
	if err != nil {
		t.Fatal(err)
	}
	addr := plainServer(t, "plain")
	key := "/micro/registry/greeter/" + addr
	if err := em.AddEndpoint(testCtx(t), key, endpoints.Endpoint{Addr: addr}); err != nil {
		t.Fatal(err)
	}
	want["plain"] = true
	client := micro.NewService(micro.WithName("client"), micro.WithLogger(quietLogger), plugin)
	defer client.Close()
	callAll(t, client, want)

	if err := em.DeleteEndpoint(testCtx(t), key); err != nil {
		t.Fatal(err)
	}
	greeter := pb.NewGreeterClient(client.Dial("greeter"))
	deadline := time.Now().Add(defaultTestTimeout)
	for streak := 0; streak < 50; {
		if time.Now().After(deadline) {
			t.Fatal("calls still reach the deleted endpoints.Manager node")
		}
		rsp, err := greeter.Hello(testCtx(t), &pb.Request{Name: "John"})
		if err != nil {
			t.Fatal(err)
		}
		if streak++; rsp.GetNode() == "plain" {
			streak = 0
		}
	}
}

// A microgrpc record that points at another gRPC server (a stale record
// whose port was reused) never gets calls: that server answers the health
// check for "" but does not serve the service's name.
func TestStaleRecordToAnotherServerGetsNoCalls(t *testing.T) {
	reg := memory.NewRegistry()
	live := startService(t, reg, "greeter")
	other := plainServer(t, "impostor")
	// The record as micro writes it: it names the health service.
	if err := reg.Register(testCtx(t), &resolver.Service{Name: "greeter",
		Nodes: []resolver.Node{{ID: "stale", Address: other, HealthService: "greeter"}}}); err != nil {
		t.Fatal(err)
	}
	client := newClient(t, reg, micro.WithLogger(quietLogger))
	greeter := pb.NewGreeterClient(client.Dial("greeter"))
	for i := range 300 {
		rsp, err := greeter.Hello(testCtx(t), &pb.Request{Name: "John"}, grpc.WaitForReady(true))
		if err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
		if rsp.GetNode() != live.svc.ID() {
			t.Fatalf("call %d answered by %q, want only the live node %q", i, rsp.GetNode(), live.svc.ID())
		}
	}
	// With only the stale record left, calls fail with Unavailable naming
	// why, instead of reaching the other server.
	live.stop(t)
	deadline := time.Now().Add(defaultTestTimeout)
	for {
		_, err := greeter.Hello(testCtx(t), &pb.Request{Name: "John"})
		if status.Code(err) == codes.Unavailable {
			t.Logf("with only the stale record: %v", err)
			break
		}
		if err == nil || time.Now().After(deadline) {
			t.Fatalf("call with only the stale record: %v, want Unavailable", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
