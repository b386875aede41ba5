package randomhash_test

import (
	"context"
	"fmt"
	"net"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/microgrpc/microgrpc/balancer/randomhash"
	"github.com/microgrpc/microgrpc/internal/greetertest"
	pb "github.com/microgrpc/microgrpc/proto/greeter"
	"github.com/microgrpc/microgrpc/resolver"
	"github.com/microgrpc/microgrpc/resolver/memory"
)

// A plain grpc-go client using the policy: canary routing to version v2.
func ExampleFilterVersion() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	reg := memory.NewRegistry()
	for _, v := range []string{"v1", "v2"} {
		lis, _ := net.Listen("tcp", "127.0.0.1:0")
		srv := grpc.NewServer()
		pb.RegisterGreeterServer(srv, &greetertest.Server{Node: "node-" + v})
		go srv.Serve(lis)
		defer srv.Stop()
		reg.Register(ctx, &resolver.Service{Name: "greeter", Version: v,
			Nodes: []resolver.Node{{ID: "node-" + v, Address: lis.Addr().String()}}})
	}

	opts := append(randomhash.DialOptions(),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithResolvers(resolver.NewBuilder(reg)))
	cc, err := grpc.NewClient("memory:///greeter", opts...)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer cc.Close()
	client := pb.NewGreeterClient(cc)
	for range 3 {
		rsp, err := client.Hello(ctx, &pb.Request{Name: "canary"}, randomhash.FilterVersion("v2"), grpc.WaitForReady(true))
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Println(rsp.GetNode())
	}
	// Output:
	// node-v2
	// node-v2
	// node-v2
}
