package micro_test

import (
	"context"
	"errors"
	"flag"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/metadata"

	"github.com/microgrpc/microgrpc/broker"
	"github.com/microgrpc/microgrpc/interceptors"
	"github.com/microgrpc/microgrpc/internal/natstest"
	"github.com/microgrpc/microgrpc/micro"
	"github.com/microgrpc/microgrpc/micro/pubsub"
	pb "github.com/microgrpc/microgrpc/proto/greeter"
	"github.com/microgrpc/microgrpc/resolver/memory"
)

func TestRegisterSubscriberRejectsBadHandlers(t *testing.T) {
	svc := newClient(t, memory.NewRegistry())
	for _, h := range []any{nil, 1, func(*pb.Event) error { return nil }, func(context.Context, *pb.Event) {}} {
		if err := pubsub.RegisterSubscriber("events", svc, h); !errors.Is(err, pubsub.ErrInvalidHandler) {
			t.Errorf("RegisterSubscriber(%T) = %v, want ErrInvalidHandler", h, err)
		}
	}
	if err := pubsub.RegisterSubscriber("bad topic", svc, func(context.Context, *pb.Event) error { return nil }); !errors.Is(err, broker.ErrInvalidTopic) {
		t.Errorf("bad topic: %v", err)
	}
}

// received collects what a subscriber handler saw.
type received struct {
	mu     sync.Mutex
	events []*pb.Event
	md     []metadata.MD
}

func (r *received) handler(ctx context.Context, e *pb.Event) error {
	md, _ := metadata.FromIncomingContext(ctx)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
	r.md = append(r.md, md)
	return nil
}

func (r *received) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.events)
}

func (r *received) waitCount(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(defaultTestTimeout)
	for r.count() < n {
		if time.Now().After(deadline) {
			t.Fatalf("handled %d messages, want %d", r.count(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

type brokerCase struct {
	name string
	opt  func(t *testing.T) micro.Option
	// acked: a nil Publish means the handler ran (http); with NATS it
	// only means the server has it.
	acked bool
}

func brokerCases() []brokerCase {
	return []brokerCase{
		{"http", func(*testing.T) micro.Option { return micro.WithBrokerPlugin("http", "127.0.0.1:0") }, true},
		{"nats", func(t *testing.T) micro.Option {
			srv, err := natstest.Start()
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { natstest.Stop(srv) })
			return micro.WithBrokerPlugin("nats", srv.ClientURL())
		}, false},
		{"jetstream", func(t *testing.T) micro.Option {
			srv, err := natstest.StartJetStream(t.TempDir(), -1)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { natstest.Stop(srv) })
			return micro.WithBrokerPlugin("jetstream", srv.ClientURL())
		}, false},
	}
}

// publishUntil publishes until the subscriber count reaches want (the
// publisher may learn about subscribers a moment after they start).
func publishUntil(t *testing.T, pub *micro.Service, ctx context.Context, topic string, msg any, r *received, want int, opts ...pubsub.PublishOption) {
	t.Helper()
	deadline := time.Now().Add(defaultTestTimeout)
	for r.count() < want {
		if err := pubsub.Publish(ctx, pub, topic, msg, opts...); err != nil {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			t.Fatal("subscriber never reached")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestPubSubEndToEnd(t *testing.T) {
	for _, bc := range brokerCases() {
		t.Run(bc.name, func(t *testing.T) {
			reg := memory.NewRegistry()
			bopt := bc.opt(t)
			var r received
			var order []string
			var omu sync.Mutex
			mark := func(s string) interceptors.SubscriberInterceptor {
				return func(next interceptors.SubscriberHandler) interceptors.SubscriberHandler {
					return func(ctx context.Context, topic string, msg any) error {
						omu.Lock()
						order = append(order, s)
						omu.Unlock()
						return next(ctx, topic, msg)
					}
				}
			}
			sub := startServiceWithSetup(t, reg, "subscriber", func(svc *micro.Service) {
				if err := pubsub.RegisterSubscriber("events", svc, r.handler); err != nil {
					t.Fatal(err)
				}
			}, bopt, micro.WithSubscriberInterceptors(mark("outer"), mark("inner")))
			_ = sub
			pub := newClient(t, reg, bopt)
			ctx := metadata.AppendToOutgoingContext(testCtx(t), "X-User-Id", "42")

			// Proto-encoded.
			publishUntil(t, pub, ctx, "events", &pb.Event{Id: "1", Message: "proto"}, &r, 1)
			// JSON-encoded, through a Publisher.
			p := pubsub.NewPublisher("events", pub, pubsub.WithJSON())
			n := r.count()
			if err := p.Publish(ctx, &pb.Event{Id: "2", Message: "json"}); err != nil {
				t.Fatal(err)
			}
			r.waitCount(t, n+1)
			r.mu.Lock()
			last := r.events[len(r.events)-1]
			md := r.md[len(r.md)-1]
			first := r.events[0]
			r.mu.Unlock()
			if first.GetMessage() != "proto" || last.GetMessage() != "json" || last.GetId() != "2" {
				t.Fatalf("decoded %v then %v", first, last)
			}
			if got := md.Get("x-user-id"); len(got) != 1 || got[0] != "42" {
				t.Fatalf("metadata in the handler: %v", md)
			}
			// Without waiting, through the same Publisher: the result
			// comes on the channel, and a value that cannot be encoded is
			// an error there too.
			n = r.count()
			if err := <-p.PublishAsync(ctx, &pb.Event{Id: "3", Message: "async"}); err != nil {
				t.Fatal(err)
			}
			r.waitCount(t, n+1)
			r.mu.Lock()
			async := r.events[len(r.events)-1]
			r.mu.Unlock()
			if async.GetMessage() != "async" {
				t.Fatalf("async publish decoded as %v", async)
			}
			if err := <-pubsub.PublishAsync(ctx, pub, "events", make(chan int)); err == nil {
				t.Fatal("a channel was published")
			}
			omu.Lock()
			if len(order) < 2 || order[0] != "outer" || order[1] != "inner" {
				t.Fatalf("subscriber interceptors ran %v, want outer then inner", order)
			}
			omu.Unlock()
		})
	}
}

// A body that does not decode never reaches the handler, and later good
// messages still do.
func TestPubSubBadBodyRefused(t *testing.T) {
	for _, bc := range brokerCases() {
		t.Run(bc.name, func(t *testing.T) {
			reg := memory.NewRegistry()
			bopt := bc.opt(t)
			var r received
			startServiceWithSetup(t, reg, "subscriber", func(svc *micro.Service) {
				if err := pubsub.RegisterSubscriber("events", svc, r.handler); err != nil {
					t.Fatal(err)
				}
			}, bopt)
			pub := newClient(t, reg, bopt)
			publishUntil(t, pub, testCtx(t), "events", &pb.Event{Id: "warm"}, &r, 1)
			b, err := pub.Broker()
			if err != nil {
				t.Fatal(err)
			}
			err = b.Publish(testCtx(t), "events", &broker.Message{Header: map[string]string{"content-type": "application/json"}, Body: []byte(`{"id": [`)})
			if bc.acked && (!errors.Is(err, broker.ErrNotDelivered) || !strings.Contains(err.Error(), "decode")) {
				t.Fatalf("undecodable message: Publish = %v, want it refused", err)
			}
			if err != nil && strings.Contains(err.Error(), "greeter.Event") {
				t.Fatalf("the publisher is shown the subscriber's Go types: %v", err)
			}
			n := r.count()
			if err := pubsub.Publish(testCtx(t), pub, "events", &pb.Event{Id: "after"}); err != nil {
				t.Fatal(err)
			}
			r.waitCount(t, n+1)
			r.mu.Lock()
			defer r.mu.Unlock()
			for _, e := range r.events {
				if e.GetId() != "warm" && e.GetId() != "after" {
					t.Fatalf("handler saw %v", e)
				}
			}
			if r.events[len(r.events)-1].GetId() != "after" {
				t.Fatalf("good message after the bad one not delivered: %v", r.events)
			}
		})
	}
}

func TestPubSubQueueGroupAcrossServices(t *testing.T) {
	reg := memory.NewRegistry()
	bopt := micro.WithBrokerPlugin("http", "127.0.0.1:0")
	var a, b, all received
	for _, r := range []*received{&a, &b} {
		startServiceWithSetup(t, reg, "worker", func(svc *micro.Service) {
			if err := pubsub.RegisterSubscriber("jobs", svc, r.handler, pubsub.WithQueue("workers")); err != nil {
				t.Fatal(err)
			}
		}, bopt)
	}
	startServiceWithSetup(t, reg, "auditor", func(svc *micro.Service) {
		if err := pubsub.RegisterSubscriber("jobs", svc, all.handler); err != nil {
			t.Fatal(err)
		}
	}, bopt)
	pub := newClient(t, reg, bopt)
	for i := range 100 {
		if err := pubsub.Publish(testCtx(t), pub, "jobs", &pb.Event{Id: string(rune('a' + i%26))}); err != nil {
			t.Fatal(err)
		}
	}
	if a.count()+b.count() != 100 || all.count() != 100 {
		t.Fatalf("queue members handled %d+%d, auditor %d; want 100 split, 100", a.count(), b.count(), all.count())
	}
	if a.count() == 0 || b.count() == 0 {
		t.Fatalf("one member got everything: %d/%d", a.count(), b.count())
	}
}

// Subscriptions stop with the service.
func TestSubscriptionsStopWithService(t *testing.T) {
	reg := memory.NewRegistry()
	bopt := micro.WithBrokerPlugin("http", "127.0.0.1:0")
	var r received
	srv := startServiceWithSetup(t, reg, "subscriber", func(svc *micro.Service) {
		pubsub.RegisterSubscriber("events", svc, r.handler)
	}, bopt)
	pub := newClient(t, reg, bopt)
	publishUntil(t, pub, testCtx(t), "events", &pb.Event{}, &r, 1)
	if err := srv.stop(t); err != nil {
		t.Fatal(err)
	}
	before := r.count()
	for range 3 {
		pubsub.Publish(testCtx(t), pub, "events", &pb.Event{})
	}
	if r.count() != before {
		t.Fatal("a stopped service still handles messages")
	}
}

// A subscriber registered while the service is starting (here from a
// before-start hook, when the service already counts as running but has
// not started its subscriptions) is subscribed once, not twice.
func TestSubscriberRegisteredWhileStartingSubscribesOnce(t *testing.T) {
	for _, bc := range brokerCases() {
		t.Run(bc.name, func(t *testing.T) {
			reg := memory.NewRegistry()
			bopt := bc.opt(t)
			var r received
			var svcRef *micro.Service
			startServiceWithSetup(t, reg, "subscriber", func(svc *micro.Service) { svcRef = svc }, bopt,
				micro.WithBeforeStart(func(context.Context) error {
					return pubsub.RegisterSubscriber("once", svcRef, r.handler)
				}))
			pub := newClient(t, reg, bopt)
			publishUntil(t, pub, testCtx(t), "once", &pb.Event{Id: "warm"}, &r, 1)
			time.Sleep(300 * time.Millisecond) // every subscription is known by now
			before := r.count()
			const n = 5
			for range n {
				if err := pubsub.Publish(testCtx(t), pub, "once", &pb.Event{Id: "x"}); err != nil {
					t.Fatal(err)
				}
			}
			time.Sleep(300 * time.Millisecond) // a second copy would arrive now
			if got := r.count() - before; got != n {
				t.Fatalf("%d publishes ran the handler %d times: subscribed more than once", n, got)
			}
		})
	}
}

// Init after RegisterSubscriber is refused: the broker was made with the
// settings of that moment and registered its delivery service on the
// server; a second one would register it again (which grpc-go answers by
// exiting the process).
func TestInitAfterRegisterSubscriberRefused(t *testing.T) {
	svc := micro.NewService(micro.WithName("early"), micro.WithRegistry(memory.NewRegistry()), micro.WithLogger(quietLogger))
	defer svc.Close()
	if err := pubsub.RegisterSubscriber("events", svc, func(context.Context, *pb.Event) error { return nil }); err != nil {
		t.Fatal(err)
	}
	err := svc.Init(micro.WithFlagSet(flag.NewFlagSet("t", flag.ContinueOnError)), micro.WithArgs([]string{"--broker=http"}))
	if !errors.Is(err, micro.ErrInitAfterUse) {
		t.Fatalf("Init after RegisterSubscriber = %v, want ErrInitAfterUse", err)
	}
}
