package micro_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc"

	memorybroker "github.com/microgrpc/microgrpc/broker/memory"
	"github.com/microgrpc/microgrpc/micro"
	"github.com/microgrpc/microgrpc/micro/pubsub"
	pb "github.com/microgrpc/microgrpc/proto/greeter"
	"github.com/microgrpc/microgrpc/resolver"
	"github.com/microgrpc/microgrpc/resolver/memory"
)

// unreachableDeregister is a registry whose Deregister never answers, as
// an etcd behind a partition: it returns only when its ctx ends.
type unreachableDeregister struct{ resolver.Registry }

func (unreachableDeregister) Deregister(ctx context.Context, _ *resolver.Service) error {
	<-ctx.Done()
	return ctx.Err()
}

// A stop with a stuck handler, a stuck subscriber and a registry that does
// not answer ends within the grace period plus a small margin: the stop
// sequence shares one deadline (it took the grace period three times, plus
// 10 s for the deregistration, before).
func TestStopEndsWithinGracePeriod(t *testing.T) {
	const grace = time.Second
	release := make(chan struct{}) // lets the stuck handlers go at the end
	defer close(release)
	handling := make(chan struct{}, 2)
	stuck := func() { handling <- struct{}{}; <-release }

	reg := unreachableDeregister{memory.NewRegistry()}
	brk := memorybroker.NewBroker()
	srv := startServiceFull(t, reg, "greeter",
		func(context.Context, *pb.Request) error { stuck(); return nil },
		func(svc *micro.Service) {
			if err := pubsub.RegisterSubscriber("events", svc, func(context.Context, *pb.Event) error { stuck(); return nil }); err != nil {
				t.Fatal(err)
			}
		},
		micro.WithBroker(brk), micro.WithGracePeriod(grace), micro.WithDeregisterWait(200*time.Millisecond))

	client := newClient(t, reg.Registry, micro.WithBroker(brk))
	go pb.NewGreeterClient(client.Dial("greeter")).Hello(testCtx(t), &pb.Request{}, grpc.WaitForReady(true))
	go pubsub.NewPublisher("events", client).Publish(testCtx(t), &pb.Event{Id: "1"})
	for range 2 {
		select {
		case <-handling:
		case <-time.After(defaultTestTimeout):
			t.Fatal("the call and the message did not reach their handlers")
		}
	}

	start := time.Now()
	srv.cancel()
	select {
	case <-srv.done:
	case <-time.After(defaultTestTimeout):
		t.Fatal("Run did not return")
	}
	took := time.Since(start)
	t.Logf("stopped in %v with grace %v", took, grace)
	if took > grace+500*time.Millisecond {
		t.Fatalf("stop took %v, want within the grace period %v and a small margin", took, grace)
	}
}
