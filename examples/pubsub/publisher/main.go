// Command publisher publishes an Event to the topic "example.topic.pubsub"
// every interval, as go-micro's pubsub example does, with the caller's
// metadata attached.
//
//	go run ./cmd/netns-run go run ./examples/pubsub/publisher -count 5
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"time"

	"google.golang.org/grpc/metadata"

	"github.com/microgrpc/microgrpc/micro"
	"github.com/microgrpc/microgrpc/micro/pubsub"
	_ "github.com/microgrpc/microgrpc/plugins/all" // --registry=etcd, --broker=nats, ... by flag
	pb "github.com/microgrpc/microgrpc/proto/greeter"
)

// Topic is the example's topic.
const Topic = "example.topic.pubsub"

func main() {
	count := flag.Int("count", 10, "events to publish (0: until interrupted)")
	interval := flag.Duration("interval", time.Second, "time between events")
	micro.DefineFlags(flag.CommandLine)
	flag.Parse()

	svc := micro.NewService(micro.WithName("example.publisher"))
	if err := svc.Init(); err != nil {
		log.Fatal(err)
	}
	defer svc.Close()
	pub := pubsub.NewPublisher(Topic, svc)
	t := time.NewTicker(*interval)
	defer t.Stop()
	for i := 1; *count == 0 || i <= *count; i++ {
		<-t.C
		ev := &pb.Event{Id: fmt.Sprint(i), Timestamp: time.Now().Unix(), Message: fmt.Sprintf("Messaging you all day on %s", Topic)}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		ctx = metadata.AppendToOutgoingContext(ctx, "x-publisher", "example")
		err := pub.Publish(ctx, ev)
		cancel()
		if err != nil {
			log.Printf("publish %s: %v", ev.GetId(), err)
			continue
		}
		fmt.Printf("published %s\n", ev.GetId())
	}
}
