// Command pubsub is a micro service that subscribes and publishes through
// the http broker without importing any plugin package: it prints what its
// subscriber received, and TestOnlyWhatIsUsedIsLinked checks that the
// broker was linked and works.
package main

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"time"

	"github.com/microgrpc/microgrpc/micro"
	"github.com/microgrpc/microgrpc/micro/pubsub"
	pb "github.com/microgrpc/microgrpc/proto/greeter"
	"github.com/microgrpc/microgrpc/resolver/memory"
)

func main() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	got := make(chan string, 1)
	var svc *micro.Service
	svc = micro.NewService(micro.WithName("pubsub"), micro.WithAddress("127.0.0.1:0"),
		micro.WithRegistry(memory.NewRegistry()), micro.WithBrokerPlugin("http", "127.0.0.1:0"),
		micro.WithContext(ctx), micro.WithSignal(false), micro.WithDeregisterWait(0), micro.WithLogger(slog.New(slog.DiscardHandler)),
		micro.WithAfterStart(func(ctx context.Context) error {
			return pubsub.Publish(ctx, svc, "pubsub.hello", &pb.Request{Name: "John"})
		}))
	err := pubsub.RegisterSubscriber("pubsub.hello", svc, func(_ context.Context, r *pb.Request) error {
		got <- r.Name
		return nil
	})
	if err != nil {
		log.Fatal(err)
	}
	go func() {
		select {
		case name := <-got:
			fmt.Println("received", name)
		case <-ctx.Done():
		}
		cancel()
	}()
	if err := svc.Run(); err != nil {
		log.Fatal(err)
	}
}
