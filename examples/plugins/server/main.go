// Command server is the greeter service using a third-party registry
// plugin, selected at run time:
//
//	go run ./examples/plugins/server --registry=file --registry_address=/tmp/reg
package main

import (
	"context"
	"log"

	// One blank import adds the plugin; --registry=file selects it.
	_ "github.com/microgrpc/microgrpc/examples/plugins/fileregistry"
	"github.com/microgrpc/microgrpc/micro"
	_ "github.com/microgrpc/microgrpc/plugins/all" // --registry=etcd, --broker=nats, ... by flag
	pb "github.com/microgrpc/microgrpc/proto/greeter"
)

type greeter struct {
	pb.UnimplementedGreeterServer
}

func (greeter) Hello(_ context.Context, req *pb.Request) (*pb.Response, error) {
	return &pb.Response{Msg: "Hello " + req.GetName()}, nil
}

func main() {
	svc := micro.NewService(micro.WithName("greeter"), micro.WithAddress("127.0.0.1:0"))
	if err := svc.Init(); err != nil {
		log.Fatal(err)
	}
	pb.RegisterGreeterServer(svc.Server(), greeter{})
	if err := svc.Run(); err != nil {
		log.Fatal(err)
	}
}
