package pubsub_test

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"google.golang.org/grpc/metadata"

	"github.com/microgrpc/microgrpc/micro"
	"github.com/microgrpc/microgrpc/micro/pubsub"
	pb "github.com/microgrpc/microgrpc/proto/greeter"
	"github.com/microgrpc/microgrpc/resolver/memory"
)

// Typed pub/sub between two services over the default broker, http: the
// subscriber's deliveries arrive on its own gRPC server, and Publish
// returns once its handler returned nil.
func ExampleRegisterSubscriber() {
	reg := memory.NewRegistry()
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	started := make(chan struct{})
	got := make(chan string, 1)
	quiet := micro.WithLogger(slog.New(slog.DiscardHandler))

	sub := micro.NewService(micro.WithName("audit"), micro.WithAddress("127.0.0.1:0"), micro.WithRegistry(reg),
		micro.WithContext(ctx), micro.WithDeregisterWait(0), quiet,
		micro.WithAfterStart(func(context.Context) error { close(started); return nil }))
	err := pubsub.RegisterSubscriber("events", sub, func(ctx context.Context, ev *pb.Event) error {
		md, _ := metadata.FromIncomingContext(ctx)
		got <- fmt.Sprintf("%s (from %s)", ev.GetMessage(), md.Get("x-shop"))
		return nil
	})
	if err != nil {
		fmt.Println(err)
	}
	done := make(chan error)
	go func() { done <- sub.Run() }()
	<-started

	pub := micro.NewService(micro.WithName("shop"), micro.WithRegistry(reg), quiet)
	defer pub.Close()
	pctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	pctx = metadata.AppendToOutgoingContext(pctx, "x-shop", "berlin")
	if err := pubsub.NewPublisher("events", pub).Publish(pctx, &pb.Event{Id: "1", Message: "order placed"}); err != nil {
		fmt.Println(err)
	}
	fmt.Println(<-got)
	stop()
	fmt.Println("stopped:", <-done)
	// Output:
	// order placed (from [berlin])
	// stopped: <nil>
}
