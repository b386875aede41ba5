// Command server is the greeter service of go-micro's README, on microgrpc.
//
//	go run ./examples/greeter/server                      # mdns
//	MICRO_REGISTRY=etcd MICRO_REGISTRY_ADDRESS=127.0.0.1:2379 go run ./examples/greeter/server
package main

import (
	"context"
	"log"

	"github.com/microgrpc/microgrpc/micro"
	pb "github.com/microgrpc/microgrpc/proto/greeter"
)

// Greeter answers Hello.
type Greeter struct {
	pb.UnimplementedGreeterServer
}

// Hello greets req.Name.
func (g *Greeter) Hello(ctx context.Context, req *pb.Request) (*pb.Response, error) {
	return &pb.Response{Msg: "Hello " + req.GetName()}, nil
}

func main() {
	service := micro.NewService(micro.WithName("greeter"))
	if err := service.Init(); err != nil {
		log.Fatal(err)
	}
	pb.RegisterGreeterServer(service.Server(), &Greeter{})
	if err := service.Run(); err != nil {
		log.Fatal(err)
	}
}
