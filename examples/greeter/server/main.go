// Command server is the greeter service of go-micro's README, on microgrpc.
//
//	../shared/bin/netns-run go run ./examples/greeter/server   # mdns, kept off the network
//	MICRO_REGISTRY=etcd MICRO_REGISTRY_ADDRESS=127.0.0.1:2379 go run ./examples/greeter/server
package main

import (
	"log"

	"github.com/microgrpc/microgrpc/examples/greeter/handler"
	"github.com/microgrpc/microgrpc/micro"
	pb "github.com/microgrpc/microgrpc/proto/greeter"
)

func main() {
	service := micro.NewService(micro.WithName("greeter"))
	if err := service.Init(); err != nil {
		log.Fatal(err)
	}
	pb.RegisterGreeterServer(service.Server(), &handler.Greeter{})
	if err := service.Run(); err != nil {
		log.Fatal(err)
	}
}
