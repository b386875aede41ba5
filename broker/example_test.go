package broker_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/microgrpc/microgrpc/broker"
	"github.com/microgrpc/microgrpc/broker/memory"
)

// Many publishes in flight, then their results: each nil means what a nil
// Publish means with that broker.
func ExamplePublishAsync() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	b := memory.NewBroker()
	if err := b.Connect(ctx); err != nil {
		fmt.Println(err)
		return
	}
	defer b.Disconnect(ctx)
	var handled atomic.Int64
	if _, err := b.Subscribe("orders", func(context.Context, broker.Event) error { handled.Add(1); return nil }); err != nil {
		fmt.Println(err)
		return
	}
	var acks []<-chan error
	for i := range 100 {
		acks = append(acks, broker.PublishAsync(ctx, b, "orders", &broker.Message{Body: fmt.Appendf(nil, "order %d", i)}))
	}
	failed := 0
	for _, ack := range acks {
		if err := <-ack; err != nil {
			failed++
		}
	}
	fmt.Println("failed:", failed, "handled:", handled.Load())
	// Output: failed: 0 handled: 100
}
