package memory_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"go.uber.org/goleak"

	"github.com/microgrpc/microgrpc/broker"
	"github.com/microgrpc/microgrpc/broker/brokertest"
	"github.com/microgrpc/microgrpc/broker/memory"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// Memory brokers do not reach one another, so every role of a check (the
// suite's Factory is called with the check's t) shares one broker, as
// brokertest.Factory allows.
func TestConformance(t *testing.T) {
	var mu sync.Mutex
	brokers := map[*testing.T]broker.Broker{}
	brokertest.Run(t, func(t *testing.T) broker.Broker {
		mu.Lock()
		defer mu.Unlock()
		if b, ok := brokers[t]; ok {
			return b
		}
		b := memory.NewBroker()
		brokers[t] = b
		t.Cleanup(func() {
			mu.Lock()
			delete(brokers, t)
			mu.Unlock()
		})
		return b
	}, brokertest.Caps{ReportsHandlerErrors: true})
}

// broker.PublishAsync on a broker without a PublishAsync of its own runs
// Publish: the channel gets Publish's result, handler errors included.
func TestPublishAsyncFallsBackToPublish(t *testing.T) {
	ctx := context.Background()
	b := memory.NewBroker()
	if err := b.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	defer b.Disconnect(ctx)
	if _, err := b.Subscribe("t", func(_ context.Context, e broker.Event) error {
		if string(e.Message().Body) == "bad" {
			return errors.New("refused")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := <-broker.PublishAsync(ctx, b, "t", &broker.Message{Body: []byte("good")}); err != nil {
		t.Fatalf("good: %v", err)
	}
	if err := <-broker.PublishAsync(ctx, b, "t", &broker.Message{Body: []byte("bad")}); !errors.Is(err, broker.ErrNotDelivered) {
		t.Fatalf("bad: got %v, want ErrNotDelivered", err)
	}
}
