// Command client is a plain grpc-go client that resolves "greeter" through
// etcd with a target, a blank import and the balancer's dial options; it
// never imports micro:
//
//	MICRO_REGISTRY_ADDRESS=127.0.0.1:2379 go run ./examples/etcd-grpc/client
package main

import (
	"context"
	"fmt"
	"log"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/microgrpc/microgrpc/balancer/randomhash"
	pb "github.com/microgrpc/microgrpc/proto/greeter"
	_ "github.com/microgrpc/microgrpc/resolver/etcd" // registers the etcd:/// scheme
)

func main() {
	opts := append(randomhash.DialOptions(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	cc, err := grpc.NewClient("etcd:///greeter", opts...)
	if err != nil {
		log.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rsp, err := pb.NewGreeterClient(cc).Hello(ctx, &pb.Request{Name: "John"}, grpc.WaitForReady(true))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(rsp.GetMsg())
}
