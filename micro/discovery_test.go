package micro_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/microgrpc/microgrpc/internal/etcdtest"
	"github.com/microgrpc/microgrpc/internal/greetertest"
	"github.com/microgrpc/microgrpc/micro"
	pb "github.com/microgrpc/microgrpc/proto/greeter"
)

// startDefault runs a greeter service with the given options and no
// explicit registry object, as a program would.
func startDefault(t *testing.T, opts ...micro.Option) *micro.Service {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan struct{})
	svc := micro.NewService(append([]micro.Option{
		micro.WithName("greeter"), micro.WithAddress("127.0.0.1:0"), micro.WithContext(ctx), micro.WithSignal(false),
		micro.WithLogger(quietLogger), micro.WithDeregisterWait(0),
		micro.WithAfterStart(func(context.Context) error { close(started); return nil }),
	}, opts...)...)
	pb.RegisterGreeterServer(svc.Server(), &greetertest.Server{Node: svc.ID()})
	done := make(chan error, 1)
	go func() { done <- svc.Run() }()
	select {
	case <-started:
	case err := <-done:
		t.Fatalf("Run = %v", err)
	case <-time.After(defaultTestTimeout):
		t.Fatal("not started")
	}
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v", err)
		}
	})
	return svc
}

func callAll(t *testing.T, client *micro.Service, want map[string]bool) {
	t.Helper()
	greeter := pb.NewGreeterClient(client.Dial("greeter"))
	seen := map[string]bool{}
	deadline := time.Now().Add(defaultTestTimeout)
	for len(seen) < len(want) && time.Now().Before(deadline) {
		rsp, err := greeter.Hello(testCtx(t), &pb.Request{Name: "John"}, grpc.WaitForReady(true))
		if err != nil {
			t.Fatal(err)
		}
		if !want[rsp.GetNode()] {
			t.Fatalf("answer from unknown node %q", rsp.GetNode())
		}
		seen[rsp.GetNode()] = true
	}
	if len(seen) != len(want) {
		t.Fatalf("reached %v, want %v", seen, want)
	}
}

// Three nodes and a client, each with its own default (mdns) registry,
// find each other over multicast on the namespace's loopback.
func TestThreeNodesThroughDefaultMDNS(t *testing.T) {
	want := map[string]bool{}
	for range 3 {
		want[startDefault(t).ID()] = true
	}
	client := micro.NewService(micro.WithName("client"), micro.WithLogger(quietLogger))
	defer client.Close()
	if got := registryName(t, client); got != "mdns" {
		t.Fatalf("default registry %q, want mdns", got)
	}
	callAll(t, client, want)
}

func TestThreeNodesThroughEtcd(t *testing.T) {
	srv, err := etcdtest.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close) // after the services' cleanups, which deregister
	plugin := micro.WithRegistryPlugin("etcd", srv.Endpoint())
	want := map[string]bool{}
	for range 3 {
		want[startDefault(t, plugin).ID()] = true
	}
	client := micro.NewService(micro.WithName("client"), micro.WithLogger(quietLogger), plugin)
	defer client.Close()
	callAll(t, client, want)
}
