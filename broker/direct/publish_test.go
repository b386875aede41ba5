package direct_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/microgrpc/microgrpc/broker"
	"github.com/microgrpc/microgrpc/broker/brokertest"
	"github.com/microgrpc/microgrpc/broker/direct"
	"github.com/microgrpc/microgrpc/resolver"
	"github.com/microgrpc/microgrpc/resolver/memory"
)

// slowRegistry answers GetService only after a delay, like a registry
// across a network.
type slowRegistry struct {
	resolver.Registry
	delay time.Duration
}

func (r slowRegistry) GetService(ctx context.Context, name string) ([]*resolver.Service, error) {
	t := time.NewTimer(r.delay)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return r.Registry.GetService(ctx, name)
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), brokertest.Timeout)
	t.Cleanup(cancel)
	return ctx
}

// Concurrent first publishes to a topic all wait for its first listing:
// none returns nil without having delivered.
func TestFirstPublishesWaitForTheListing(t *testing.T) {
	reg := memory.NewRegistry()
	sub := brokertest.New(t, factory(reg))
	var handled atomic.Int64
	if _, err := sub.Subscribe("first", func(context.Context, broker.Event) error { handled.Add(1); return nil }); err != nil {
		t.Fatal(err)
	}
	pub := brokertest.New(t, factory(slowRegistry{Registry: reg, delay: 100 * time.Millisecond}))
	const n = 10
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() { errs[i] = pub.Publish(testCtx(t), "first", &broker.Message{Body: []byte("x")}) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("publish %d: %v", i, err)
		}
	}
	if got := handled.Load(); got != n {
		t.Fatalf("%d first publishes returned nil, %d were handled", n, got)
	}
}

// A topic no Publish used for the idle timeout is forgotten (its watch
// and goroutine stop); publishing to it again lists it again.
func TestIdleTopicsAreEvicted(t *testing.T) {
	reg := memory.NewRegistry()
	sub := brokertest.New(t, factory(reg))
	var handled atomic.Int64
	if _, err := sub.Subscribe("t0", func(context.Context, broker.Event) error { handled.Add(1); return nil }); err != nil {
		t.Fatal(err)
	}
	pub := brokertest.New(t, func(*testing.T) broker.Broker {
		return direct.NewBroker(direct.WithRegistry(reg), direct.WithAddress("127.0.0.1:0"),
			direct.WithLogger(quiet), direct.WithIdleTimeout(100*time.Millisecond))
	})
	// The first publish opens the connection to the subscriber; count
	// goroutines after it.
	if err := pub.Publish(testCtx(t), "t0", &broker.Message{Body: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	before := runtime.NumGoroutine()
	for i := 1; i < 20; i++ {
		if err := pub.Publish(testCtx(t), fmt.Sprint("t", i), &broker.Message{Body: []byte("x")}); err != nil {
			t.Fatal(err)
		}
	}
	if got := direct.Topics(pub); got < 10 {
		t.Fatalf("following %d topics right after publishing to 20", got)
	}
	peak := runtime.NumGoroutine()
	if peak < before+10 {
		t.Fatalf("%d goroutines before, %d while following 20 topics: nothing to evict?", before, peak)
	}
	deadline := time.Now().Add(brokertest.Timeout)
	for direct.Topics(pub) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("still following %d idle topics", direct.Topics(pub))
		}
		time.Sleep(20 * time.Millisecond)
	}
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines before publishing, %d with 20 topics, %d after eviction", before, peak, runtime.NumGoroutine())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := pub.Publish(testCtx(t), "t0", &broker.Message{Body: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	if handled.Load() != 2 {
		t.Fatalf("handled %d, want 2 (before and after eviction)", handled.Load())
	}
}

// A slow handler slows only its own subscription, and a subscription
// runs at most MaxConcurrent handlers at once.
func TestSlowSubscriberSlowsOnlyItself(t *testing.T) {
	reg := memory.NewRegistry()
	f := factory(reg)
	slowB, fastB, pub := brokertest.New(t, f), brokertest.New(t, f), brokertest.New(t, f)
	release := make(chan struct{})
	var running, peak atomic.Int64
	if _, err := slowB.Subscribe("slow", func(ctx context.Context, _ broker.Event) error {
		n := running.Add(1)
		defer running.Add(-1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		select {
		case <-release:
		case <-ctx.Done():
		}
		return nil
	}, broker.MaxConcurrent(3)); err != nil {
		t.Fatal(err)
	}
	var fast atomic.Int64
	if _, err := fastB.Subscribe("fast", func(context.Context, broker.Event) error { fast.Add(1); return nil }); err != nil {
		t.Fatal(err)
	}
	// Ten publishes to the slow topic, held by its handler.
	var wg sync.WaitGroup
	slowErrs := make([]error, 10)
	for i := range 10 {
		wg.Go(func() { slowErrs[i] = pub.Publish(testCtx(t), "slow", &broker.Message{Body: []byte("s")}) })
	}
	deadline := time.Now().Add(brokertest.Timeout)
	for running.Load() < 3 {
		if time.Now().After(deadline) {
			t.Fatal("the slow handler never ran")
		}
		time.Sleep(5 * time.Millisecond)
	}
	// Meanwhile the fast topic, through the same publisher, flows.
	start := time.Now()
	for range 100 {
		if err := pub.Publish(testCtx(t), "fast", &broker.Message{Body: []byte("f")}); err != nil {
			t.Fatal(err)
		}
	}
	took := time.Since(start)
	close(release)
	wg.Wait()
	for _, err := range slowErrs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if fast.Load() != 100 {
		t.Fatalf("fast handled %d of 100 while the slow one was stuck", fast.Load())
	}
	if p := peak.Load(); p != 3 {
		t.Fatalf("peak concurrent handler calls %d, want the bound 3", p)
	}
	t.Logf("100 publishes to a fast subscriber took %v while another was stuck", took)
}

// A queue member that takes deliveries and never answers (frozen) costs
// one request timeout per message sent to it; then the message goes to
// another member, within the same Publish.
func TestFrozenMemberFailsOverWithinOnePublish(t *testing.T) {
	reg := memory.NewRegistry()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns sync.WaitGroup
	var mu sync.Mutex
	var open []net.Conn
	// Registered first, so it runs last: after the brokers disconnected.
	t.Cleanup(func() {
		lis.Close()
		mu.Lock()
		for _, c := range open {
			c.Close()
		}
		mu.Unlock()
		conns.Wait()
	})
	conns.Go(func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			open = append(open, c)
			mu.Unlock()
			conns.Go(func() {
				defer c.Close()
				io.Copy(io.Discard, c) // takes everything, answers nothing
			})
		}
	})
	frozen := &resolver.Service{Name: direct.ServicePrefix + "jobs", Nodes: []resolver.Node{{
		ID: "frozen-1", Address: lis.Addr().String(), Metadata: map[string]string{"queue": "workers", "topic": "jobs"},
	}}}
	if err := reg.Register(testCtx(t), frozen); err != nil {
		t.Fatal(err)
	}
	worker := brokertest.New(t, factory(reg))
	var handled atomic.Int64
	if _, err := worker.Subscribe("jobs", func(context.Context, broker.Event) error { handled.Add(1); return nil }, broker.Queue("workers")); err != nil {
		t.Fatal(err)
	}
	pub := brokertest.New(t, func(*testing.T) broker.Broker {
		return direct.NewBroker(direct.WithRegistry(reg), direct.WithAddress("127.0.0.1:0"),
			direct.WithLogger(quiet), direct.WithRequestTimeout(200*time.Millisecond))
	})
	const n = 20
	for i := range n {
		if err := pub.Publish(testCtx(t), "jobs", &broker.Message{Body: []byte(fmt.Sprint(i))}); err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
	}
	if handled.Load() != n {
		t.Fatalf("the working member handled %d of %d", handled.Load(), n)
	}
}
