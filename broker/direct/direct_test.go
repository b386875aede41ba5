package direct_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/microgrpc/microgrpc/broker"
	"github.com/microgrpc/microgrpc/broker/brokertest"
	"github.com/microgrpc/microgrpc/broker/direct"
	"github.com/microgrpc/microgrpc/resolver"
	"github.com/microgrpc/microgrpc/resolver/memory"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var quiet = slog.New(slog.DiscardHandler)

func factory(reg resolver.Registry) brokertest.Factory {
	return func(t *testing.T) broker.Broker {
		return direct.NewBroker(direct.WithRegistry(reg), direct.WithAddress("127.0.0.1:0"), direct.WithLogger(quiet))
	}
}

func TestConformance(t *testing.T) {
	brokertest.Run(t, factory(memory.NewRegistry()), brokertest.Caps{ReportsHandlerErrors: true})
}

// A queue member that stops mid-stream loses no acknowledged message:
// every Publish that returned nil was handled by some member.
func TestQueueMemberStopsMidStreamNothingAckedLost(t *testing.T) {
	f := factory(memory.NewRegistry())
	pub := brokertest.New(t, f)
	var mu sync.Mutex
	handled := map[string]int{}
	var members []broker.Broker
	for range 3 {
		b := f(t)
		if err := b.Connect(context.Background()); err != nil {
			t.Fatal(err)
		}
		members = append(members, b)
		_, err := b.Subscribe("stream", func(_ context.Context, e broker.Event) error {
			time.Sleep(time.Millisecond) // be mid-delivery when the member stops
			mu.Lock()
			handled[string(e.Message().Body)]++
			mu.Unlock()
			return nil
		}, broker.Queue("g"))
		if err != nil {
			t.Fatal(err)
		}
	}
	defer func() {
		for _, m := range members[1:] {
			ctx, cancel := context.WithTimeout(context.Background(), brokertest.Timeout)
			m.Disconnect(ctx)
			cancel()
		}
	}()
	var acked []string
	var failed atomic.Int64
	for i := range 600 {
		if i == 200 {
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), brokertest.Timeout)
				defer cancel()
				members[0].Disconnect(ctx) // mid-stream
			}()
		}
		body := fmt.Sprint("m", i)
		ctx, cancel := context.WithTimeout(context.Background(), brokertest.Timeout)
		err := pub.Publish(ctx, "stream", &broker.Message{Body: []byte(body)})
		cancel()
		if err != nil {
			failed.Add(1)
			continue
		}
		acked = append(acked, body)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, body := range acked {
		if handled[body] == 0 {
			t.Fatalf("acknowledged message %s was never handled", body)
		}
	}
	t.Logf("%d acknowledged, all handled; %d publishes failed and were reported", len(acked), failed.Load())
	if len(acked) < 500 {
		t.Fatalf("only %d of 600 delivered: failover to the other members did not work", len(acked))
	}
}

// When no member of a group can take a message, Publish says so, naming
// topic and group.
func TestGroupWithNoWorkingMemberFails(t *testing.T) {
	f := factory(memory.NewRegistry())
	pub, sub := brokertest.New(t, f), brokertest.New(t, f)
	if _, err := sub.Subscribe("jobs", func(context.Context, broker.Event) error { return errors.New("disk full") }, broker.Queue("workers")); err != nil {
		t.Fatal(err)
	}
	err := pub.Publish(context.Background(), "jobs", &broker.Message{Body: []byte("x")})
	if !errors.Is(err, broker.ErrNotDelivered) {
		t.Fatalf("Publish = %v", err)
	}
	for _, want := range []string{`"jobs"`, `"workers"`, "disk full"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %s", err, want)
		}
	}
}
