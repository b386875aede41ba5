// Command subscriber handles the publisher's events; with -queue it joins
// a queue group, so that the group's members share the events:
//
//	go run ./examples/pubsub/subscriber                 # gets every event
//	go run ./examples/pubsub/subscriber -queue workers  # shares them with the other workers
package main

import (
	"context"
	"flag"
	"fmt"
	"log"

	"google.golang.org/grpc/metadata"

	"github.com/microgrpc/microgrpc/micro"
	"github.com/microgrpc/microgrpc/micro/pubsub"
	_ "github.com/microgrpc/microgrpc/plugins/all" // --registry=etcd, --broker=nats, ... by flag
	pb "github.com/microgrpc/microgrpc/proto/greeter"
)

const topic = "example.topic.pubsub"

func main() {
	queue := flag.String("queue", "", "queue group to join")
	micro.DefineFlags(flag.CommandLine)
	flag.Parse()

	svc := micro.NewService(micro.WithName("example.subscriber"))
	if err := svc.Init(); err != nil {
		log.Fatal(err)
	}
	var opts []pubsub.SubscriberOption
	if *queue != "" {
		opts = append(opts, pubsub.WithQueue(*queue))
	}
	handler := func(ctx context.Context, ev *pb.Event) error {
		md, _ := metadata.FromIncomingContext(ctx)
		fmt.Printf("received %s %q from %v\n", ev.GetId(), ev.GetMessage(), md.Get("x-publisher"))
		return nil
	}
	if err := pubsub.RegisterSubscriber(topic, svc, handler, opts...); err != nil {
		log.Fatal(err)
	}
	if err := svc.Run(); err != nil {
		log.Fatal(err)
	}
}
