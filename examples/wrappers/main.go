// Command wrappers shows go-micro's wrappers as gRPC interceptors: a
// handler wrapper that logs every request a service handles, a client
// wrapper that logs every call it makes, and a per-attempt hook that names
// the node each attempt went to (go-micro's CallWrapper). Server and
// client share an in-process registry, so it runs anywhere:
//
//	go run ./examples/wrappers
package main

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"time"

	"google.golang.org/grpc"

	"github.com/microgrpc/microgrpc/examples/greeter/handler"
	"github.com/microgrpc/microgrpc/interceptors/nodehook"
	"github.com/microgrpc/microgrpc/interceptors/recovery"
	"github.com/microgrpc/microgrpc/micro"
	pb "github.com/microgrpc/microgrpc/proto/greeter"
	"github.com/microgrpc/microgrpc/resolver/memory"
)

// logWrapper is a handler wrapper: it runs around every request the
// service handles.
func logWrapper(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	fmt.Printf("[wrapper] server request: %s\n", info.FullMethod)
	return h(ctx, req)
}

// clientWrapper is a client wrapper: it runs around every call the client
// makes, before a node is chosen.
func clientWrapper(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	fmt.Printf("[wrapper] client request: %s\n", method)
	return invoker(ctx, method, req, reply, cc, opts...)
}

// attemptHook runs once per attempt, after the node is chosen.
func attemptHook(_ context.Context, a nodehook.Attempt) {
	fmt.Printf("[wrapper] attempt on node %s: %s, error %v\n", a.Node, a.Method, a.Err)
}

func main() {
	quiet := slog.New(slog.DiscardHandler)
	reg := memory.NewRegistry()
	ctx, stop := context.WithCancel(context.Background())
	started := make(chan struct{})
	svc := micro.NewService(micro.WithName("greeter"), micro.WithID("greeter-1"), micro.WithAddress("127.0.0.1:0"),
		micro.WithRegistry(reg), micro.WithContext(ctx), micro.WithLogger(quiet),
		micro.WithUnaryServerInterceptors(recovery.UnaryServerInterceptor(quiet), logWrapper),
		micro.WithAfterStart(func(context.Context) error { close(started); return nil }))
	pb.RegisterGreeterServer(svc.Server(), &handler.Greeter{})
	done := make(chan error, 1)
	go func() { done <- svc.Run() }()
	<-started

	client := micro.NewService(micro.WithName("greeter.client"), micro.WithRegistry(reg), micro.WithLogger(quiet),
		micro.WithUnaryClientInterceptors(clientWrapper),
		micro.WithDialOptions(grpc.WithStatsHandler(nodehook.NewClientHandler(attemptHook))))
	callCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	rsp, err := pb.NewGreeterClient(client.Dial("greeter")).Hello(callCtx, &pb.Request{Name: "John"})
	cancel()
	client.Close()
	stop()
	<-done
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(rsp.GetMsg())
}
