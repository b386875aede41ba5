// Command server is the greeter service of go-micro's README, on microgrpc.
//
//	go run ./cmd/netns-run go run ./examples/greeter/server   # mdns, kept off the network
//	MICRO_REGISTRY=etcd MICRO_REGISTRY_ADDRESS=127.0.0.1:2379 go run ./examples/greeter/server
package main

import (
	"flag"
	"log"
	"time"

	"github.com/microgrpc/microgrpc/examples/greeter/handler"
	"github.com/microgrpc/microgrpc/micro"
	_ "github.com/microgrpc/microgrpc/plugins/all" // --registry=etcd, --broker=nats, ... by flag
	pb "github.com/microgrpc/microgrpc/proto/greeter"
)

func main() {
	interval := flag.Duration("stream_interval", 100*time.Millisecond, "time between HelloStream's greetings")
	micro.DefineFlags(flag.CommandLine)
	flag.Parse()
	service := micro.NewService(micro.WithName("greeter"))
	if err := service.Init(); err != nil {
		log.Fatal(err)
	}
	pb.RegisterGreeterServer(service.Server(), &handler.Greeter{Node: service.ID(), Interval: *interval})
	if err := service.Run(); err != nil {
		log.Fatal(err)
	}
}
