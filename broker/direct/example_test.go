package direct_test

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/microgrpc/microgrpc/broker"
	"github.com/microgrpc/microgrpc/broker/direct"
	"github.com/microgrpc/microgrpc/resolver/memory"
)

// The broker without a micro service: the subscribing broker starts a
// gRPC server of its own for its deliveries (on 127.0.0.1 here), with a
// micro service's limits, and the publishing one finds it through the
// shared registry.
func ExampleNewBroker() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	reg := memory.NewRegistry()
	quiet := direct.WithLogger(slog.New(slog.DiscardHandler))
	sub := direct.NewBroker(direct.WithRegistry(reg), direct.WithAddress("127.0.0.1:0"), quiet)
	pub := direct.NewBroker(direct.WithRegistry(reg), quiet)
	for _, b := range []broker.Broker{sub, pub} {
		if err := b.Connect(ctx); err != nil {
			fmt.Println(err)
			return
		}
		defer b.Disconnect(ctx)
	}
	if _, err := sub.Subscribe("orders", func(_ context.Context, e broker.Event) error {
		fmt.Printf("handled %s\n", e.Message().Body)
		return nil
	}, broker.Queue("billing")); err != nil {
		fmt.Println(err)
		return
	}
	err := pub.Publish(ctx, "orders", &broker.Message{Body: []byte("order 1")})
	fmt.Println("publish:", err)
	// Output:
	// handled order 1
	// publish: <nil>
}
