// Command client calls the greeter service once and prints the greeting.
//
//	go run ./examples/greeter/client
package main

import (
	"context"
	"fmt"
	"log"
	"time"

	"google.golang.org/grpc"

	"github.com/microgrpc/microgrpc/micro"
	_ "github.com/microgrpc/microgrpc/plugins/all" // --registry=etcd, --broker=nats, ... by flag
	pb "github.com/microgrpc/microgrpc/proto/greeter"
)

func main() {
	service := micro.NewService(micro.WithName("greeter.client"))
	if err := service.Init(); err != nil {
		log.Fatal(err)
	}
	defer service.Close()

	greeter := pb.NewGreeterClient(service.Dial("greeter"))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// WaitForReady: the server may still be starting or being discovered.
	rsp, err := greeter.Hello(ctx, &pb.Request{Name: "John"}, grpc.WaitForReady(true))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(rsp.GetMsg())
}
