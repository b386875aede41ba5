package resolver_test

import (
	"context"
	"fmt"
	"net"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/microgrpc/microgrpc/internal/greetertest"
	pb "github.com/microgrpc/microgrpc/proto/greeter"
	"github.com/microgrpc/microgrpc/resolver"
	"github.com/microgrpc/microgrpc/resolver/memory"
)

// Any Registry becomes a gRPC resolver: register a node, dial its name.
func ExampleNewBuilder() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	lis, _ := net.Listen("tcp", "127.0.0.1:0")
	srv := grpc.NewServer()
	pb.RegisterGreeterServer(srv, &greetertest.Server{Node: "node-1"})
	go srv.Serve(lis)
	defer srv.Stop()

	reg := memory.NewRegistry()
	reg.Register(ctx, &resolver.Service{Name: "greeter", Nodes: []resolver.Node{{ID: "node-1", Address: lis.Addr().String()}}})

	cc, err := grpc.NewClient("memory:///greeter",
		grpc.WithResolvers(resolver.NewBuilder(reg)),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer cc.Close()
	rsp, err := pb.NewGreeterClient(cc).Hello(ctx, &pb.Request{Name: "John"})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(rsp.GetMsg(), "from", rsp.GetNode())
	// Output: Hello John from node-1
}
