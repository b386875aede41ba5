// Command server is a plain grpc-go server that registers itself in etcd
// with microgrpc's etcd registry, and nothing else of microgrpc:
//
//	MICRO_REGISTRY_ADDRESS=127.0.0.1:2379 go run ./examples/etcd-grpc/server
package main

import (
	"context"
	"log"
	"net"
	"os/signal"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/microgrpc/microgrpc/examples/greeter/handler"
	pb "github.com/microgrpc/microgrpc/proto/greeter"
	"github.com/microgrpc/microgrpc/resolver"
	"github.com/microgrpc/microgrpc/resolver/etcd"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	srv := grpc.NewServer()
	pb.RegisterGreeterServer(srv, &handler.Greeter{})
	// The balancer's default service config checks health on every node;
	// a server without the standard health service gets calls anyway, with
	// an error logged by the client. Answering for the service's name too,
	// and saying so in the record (HealthService below), means that a
	// record of ours left pointing at some other server gets no calls.
	hs := health.NewServer()
	hs.SetServingStatus("greeter", healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(srv, hs)
	go srv.Serve(lis)

	reg, err := etcd.NewRegistry() // endpoints from MICRO_REGISTRY_ADDRESS
	if err != nil {
		log.Fatal(err)
	}
	defer reg.Close()
	self := &resolver.Service{Name: "greeter", Nodes: []resolver.Node{{ID: "plain-1", Address: lis.Addr().String(), HealthService: "greeter"}}}
	regCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	err = reg.Register(regCtx, self, resolver.WithTTL(10*time.Second)) // kept alive by the registry
	cancel()
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("serving greeter at %s, registered in etcd", lis.Addr())

	<-ctx.Done()
	hs.Shutdown() // NOT_SERVING: clients stop sending calls here
	dctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	reg.Deregister(dctx, self)
	cancel()
	srv.GracefulStop()
	log.Print("stopped")
}
