// Command existing-server shows a team's existing gRPC server, with its own
// interceptor and health service, gaining registration, heartbeats and
// graceful deregistration from microgrpc without any change to its
// handlers. Any microgrpc client (or `grpc.NewClient("etcd:///legacy-greeter")`)
// then finds it by name.
//
//	go run ./examples/existing-server
package main

import (
	"context"
	"flag"
	"log"
	"log/slog"
	"net"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/microgrpc/microgrpc/micro"
	_ "github.com/microgrpc/microgrpc/plugins/all" // --registry=etcd, --broker=nats, ... by flag
	pb "github.com/microgrpc/microgrpc/proto/greeter"
)

type greeter struct {
	pb.UnimplementedGreeterServer
}

func (greeter) Hello(ctx context.Context, req *pb.Request) (*pb.Response, error) {
	return &pb.Response{Msg: "Hello " + req.GetName() + " from an existing server"}, nil
}

// logCalls is the kind of interceptor an existing server already has.
func logCalls(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	rsp, err := h(ctx, req)
	slog.Info("call", "method", info.FullMethod, "error", err)
	return rsp, err
}

func main() {
	// The program parses its own flags, so it defines microgrpc's first.
	micro.DefineFlags(flag.CommandLine)
	addr := flag.String("listen", "127.0.0.1:0", "address to listen on")
	flag.Parse()

	// The server as the team has it today.
	srv := grpc.NewServer(grpc.UnaryInterceptor(logCalls))
	pb.RegisterGreeterServer(srv, greeter{})
	hs := health.NewServer()
	healthpb.RegisterHealthServer(srv, hs)

	// What microgrpc adds: a service around it. Init reads the parsed
	// --registry etc. and the MICRO_* environment.
	lis, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	svc := micro.NewService(micro.WithName("legacy-greeter"), micro.WithGRPCServer(srv), micro.WithListener(lis),
		micro.WithBeforeStop(func(context.Context) error {
			hs.Shutdown() // the server's own health service goes NOT_SERVING too
			return nil
		}))
	if err := svc.Init(); err != nil {
		log.Fatal(err)
	}
	if err := svc.Run(); err != nil {
		log.Fatal(err)
	}
}
