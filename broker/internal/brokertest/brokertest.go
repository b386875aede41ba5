// Package brokertest is the behaviour every broker must have, as tests
// each implementation runs against itself.
package brokertest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/microgrpc/microgrpc/broker"
)

// Timeout bounds every wait.
const Timeout = 20 * time.Second

// Caps says what a broker can promise.
type Caps struct {
	// ReportsHandlerErrors: a handler error comes back from Publish.
	ReportsHandlerErrors bool
}

// Factory makes a connected broker; brokers from one factory reach each
// other (same registry, same NATS server). It is closed by the suite.
type Factory func(t *testing.T) broker.Broker

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), Timeout)
	t.Cleanup(cancel)
	return c
}

// New makes and connects a broker, disconnected at cleanup.
func New(t *testing.T, f Factory) broker.Broker {
	t.Helper()
	b := f(t)
	if err := b.Connect(ctx(t)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c, cancel := context.WithTimeout(context.Background(), Timeout)
		defer cancel()
		b.Disconnect(c)
	})
	return b
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(Timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Run runs the suite. A topic per test keeps them apart.
func Run(t *testing.T, f Factory, caps Caps) {
	t.Run("Broadcast", func(t *testing.T) { testBroadcast(t, f) })
	t.Run("QueueGroupExactlyOnce", func(t *testing.T) { testQueueGroup(t, f) })
	t.Run("HeadersSurvive", func(t *testing.T) { testHeaders(t, f) })
	t.Run("NoSubscribersIsNotAnError", func(t *testing.T) { testNoSubscribers(t, f) })
	t.Run("OversizedRefused", func(t *testing.T) { testOversized(t, f) })
	t.Run("InvalidTopic", func(t *testing.T) { testInvalidTopic(t, f) })
	t.Run("ExplicitAck", func(t *testing.T) { testExplicitAck(t, f, caps) })
	t.Run("InOrderWithMaxConcurrentOne", func(t *testing.T) { testOrder(t, f) })
	if caps.ReportsHandlerErrors {
		t.Run("HandlerErrorReachesPublisher", func(t *testing.T) { testHandlerError(t, f) })
	}
}

func testBroadcast(t *testing.T, f Factory) {
	pub := New(t, f)
	var counts [3]atomic.Int64
	for i := range counts {
		sub := New(t, f)
		if _, err := sub.Subscribe("bcast", func(context.Context, broker.Event) error { counts[i].Add(1); return nil }); err != nil {
			t.Fatal(err)
		}
	}
	const n = 20
	for i := range n {
		waitPublish(t, pub, "bcast", &broker.Message{Body: []byte(fmt.Sprint(i))}, func() bool { return counts[0].Load() > 0 && counts[1].Load() > 0 && counts[2].Load() > 0 }, i == 0)
	}
	eventually(t, "every subscriber to get every message", func() bool {
		return counts[0].Load() == n && counts[1].Load() == n && counts[2].Load() == n
	})
}

// waitPublish publishes; for the first message it retries until cond holds,
// since a publisher learns about new subscribers through discovery.
func waitPublish(t *testing.T, b broker.Broker, topic string, m *broker.Message, cond func() bool, first bool) {
	t.Helper()
	if err := b.Publish(ctx(t), topic, m); err != nil {
		t.Fatal(err)
	}
	if !first {
		return
	}
	deadline := time.Now().Add(Timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("subscribers never reached")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func testQueueGroup(t *testing.T, f Factory) {
	pub := New(t, f)
	var mu sync.Mutex
	seen := map[string]int{}
	perMember := make([]int, 3)
	for i := range 3 {
		sub := New(t, f)
		_, err := sub.Subscribe("queue", func(_ context.Context, e broker.Event) error {
			mu.Lock()
			seen[string(e.Message().Body)]++
			perMember[i]++
			mu.Unlock()
			return nil
		}, broker.Queue("workers"))
		if err != nil {
			t.Fatal(err)
		}
	}
	// Prime: wait until the publisher reaches the group.
	primed := func() bool { mu.Lock(); defer mu.Unlock(); return seen["prime"] > 0 }
	for !primed() {
		if err := pub.Publish(ctx(t), "queue", &broker.Message{Body: []byte("prime")}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	eventuallyAllMembersKnown(t, pub, "queue")
	const n = 1000
	for i := range n {
		if err := pub.Publish(ctx(t), "queue", &broker.Message{Body: []byte(fmt.Sprint("m", i))}); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "all messages handled", func() bool {
		mu.Lock()
		defer mu.Unlock()
		total := 0
		for k, c := range seen {
			if k != "prime" {
				total += c
			}
		}
		return total >= n
	})
	time.Sleep(100 * time.Millisecond) // a duplicate would arrive now
	mu.Lock()
	defer mu.Unlock()
	for i := range n {
		if c := seen[fmt.Sprint("m", i)]; c != 1 {
			t.Fatalf("message m%d handled %d times, want exactly once", i, c)
		}
	}
	for i, c := range perMember {
		if c == 0 {
			t.Errorf("member %d got nothing: %v", i, perMember)
		}
	}
	t.Logf("per member: %v", perMember)
}

// eventuallyAllMembersKnown gives discovery-based brokers a moment to see
// the whole group (members registered at about the same time).
func eventuallyAllMembersKnown(t *testing.T, _ broker.Broker, _ string) {
	time.Sleep(200 * time.Millisecond)
}

func testHeaders(t *testing.T, f Factory) {
	pub, sub := New(t, f), New(t, f)
	got := make(chan *broker.Message, 16)
	if _, err := sub.Subscribe("headers", func(_ context.Context, e broker.Event) error { got <- e.Message(); return nil }); err != nil {
		t.Fatal(err)
	}
	m := &broker.Message{Header: map[string]string{"Content-Type": "application/json", "x-user-id": "42"}, Body: []byte(`{"a":1}`)}
	var rcv *broker.Message
	deadline := time.Now().Add(Timeout)
	for rcv == nil {
		if err := pub.Publish(ctx(t), "headers", m, broker.WithHeader("X-Trace", "abc")); err != nil {
			t.Fatal(err)
		}
		select {
		case rcv = <-got:
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("nothing received")
		}
	}
	want := map[string]string{"content-type": "application/json", "x-user-id": "42", "x-trace": "abc"}
	for k, v := range want {
		if rcv.Header[k] != v {
			t.Errorf("header %s = %q, want %q (all: %v)", k, rcv.Header[k], v, rcv.Header)
		}
	}
	if string(rcv.Body) != `{"a":1}` {
		t.Errorf("body %q", rcv.Body)
	}
}

func testNoSubscribers(t *testing.T, f Factory) {
	if err := New(t, f).Publish(ctx(t), "nobody-listens", &broker.Message{Body: []byte("x")}); err != nil {
		t.Fatalf("Publish with no subscribers = %v, want nil", err)
	}
}

func testOversized(t *testing.T, f Factory) {
	err := New(t, f).Publish(ctx(t), "big", &broker.Message{Body: make([]byte, broker.DefaultMaxMessageSize+1)})
	if !errors.Is(err, broker.ErrMessageTooLarge) || !strings.Contains(err.Error(), "big") {
		t.Fatalf("oversized Publish = %v, want ErrMessageTooLarge naming the topic", err)
	}
}

func testInvalidTopic(t *testing.T, f Factory) {
	b := New(t, f)
	for _, topic := range []string{"", "a b", "a/b", "a.*"} {
		if err := b.Publish(ctx(t), topic, &broker.Message{}); !errors.Is(err, broker.ErrInvalidTopic) {
			t.Errorf("Publish(%q) = %v", topic, err)
		}
		if _, err := b.Subscribe(topic, func(context.Context, broker.Event) error { return nil }); !errors.Is(err, broker.ErrInvalidTopic) {
			t.Errorf("Subscribe(%q) = %v", topic, err)
		}
	}
}

func testExplicitAck(t *testing.T, f Factory, caps Caps) {
	pub, sub := New(t, f), New(t, f)
	var calls atomic.Int64
	if _, err := sub.Subscribe("ack", func(_ context.Context, e broker.Event) error {
		calls.Add(1)
		if string(e.Message().Body) == "ack" {
			return e.Ack()
		}
		return nil // forgets to Ack
	}, broker.DisableAutoAck()); err != nil {
		t.Fatal(err)
	}
	waitPublish(t, pub, "ack", &broker.Message{Body: []byte("ack")}, func() bool { return calls.Load() > 0 }, true)
	err := pub.Publish(ctx(t), "ack", &broker.Message{Body: []byte("no-ack")})
	if caps.ReportsHandlerErrors && !errors.Is(err, broker.ErrNotDelivered) {
		t.Fatalf("unacknowledged delivery: Publish = %v, want ErrNotDelivered", err)
	}
}

func testHandlerError(t *testing.T, f Factory) {
	pub, sub := New(t, f), New(t, f)
	var calls atomic.Int64
	if _, err := sub.Subscribe("fails", func(context.Context, broker.Event) error {
		calls.Add(1)
		return errors.New("cannot handle this")
	}); err != nil {
		t.Fatal(err)
	}
	var err error
	eventually(t, "the subscriber to be reached", func() bool {
		err = pub.Publish(ctx(t), "fails", &broker.Message{Body: []byte("x")})
		return calls.Load() > 0
	})
	if !errors.Is(err, broker.ErrNotDelivered) || !strings.Contains(err.Error(), "cannot handle this") || !strings.Contains(err.Error(), "fails") {
		t.Fatalf("Publish = %v, want ErrNotDelivered with the handler's error and the topic", err)
	}
}

// testOrder: with MaxConcurrent(1), messages one publisher publishes one
// after another are handled one at a time, in that order.
func testOrder(t *testing.T, f Factory) {
	pub, sub := New(t, f), New(t, f)
	var mu sync.Mutex
	var got []string
	var running, overlap atomic.Int64
	if _, err := sub.Subscribe("order", func(_ context.Context, e broker.Event) error {
		if running.Add(1) > 1 {
			overlap.Add(1)
		}
		defer running.Add(-1)
		mu.Lock()
		got = append(got, string(e.Message().Body))
		mu.Unlock()
		return nil
	}, broker.MaxConcurrent(1)); err != nil {
		t.Fatal(err)
	}
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(got) }
	waitPublish(t, pub, "order", &broker.Message{Body: []byte("warm")}, func() bool { return count() > 0 }, true)
	mu.Lock()
	got = nil
	mu.Unlock()
	const n = 300
	for i := range n {
		if err := pub.Publish(ctx(t), "order", &broker.Message{Body: []byte(fmt.Sprint(i))}); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "every message handled", func() bool { return count() >= n })
	mu.Lock()
	defer mu.Unlock()
	for i, b := range got[:n] {
		if b != fmt.Sprint(i) {
			t.Fatalf("message %d handled as number %d: order lost (%v...)", i, i, got[max(0, i-3):i+1])
		}
	}
	if overlap.Load() > 0 {
		t.Fatalf("%d handler calls overlapped with MaxConcurrent(1)", overlap.Load())
	}
}
