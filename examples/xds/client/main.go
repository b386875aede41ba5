// Command client is a plain grpc-go client that finds the greeter through
// xDS: a blank import of google.golang.org/grpc/xds, the target
// xds:///greeter, and the bootstrap file that micro xds bootstrap prints in
// GRPC_XDS_BOOTSTRAP. It imports nothing of microgrpc but the greeter's
// generated code:
//
//	micro xds bootstrap > bootstrap.json
//	GRPC_XDS_BOOTSTRAP=bootstrap.json go run ./examples/xds/client
package main

import (
	"context"
	"fmt"
	"log"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	_ "google.golang.org/grpc/xds" // registers the xds:/// scheme and its balancers

	pb "github.com/microgrpc/microgrpc/proto/greeter"
)

func main() {
	cc, err := grpc.NewClient("xds:///greeter", grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		log.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	rsp, err := pb.NewGreeterClient(cc).Hello(ctx, &pb.Request{Name: "John"})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(rsp.GetMsg())
}
