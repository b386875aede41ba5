package brokertest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/microgrpc/microgrpc/broker"
)

// checkNotConnected: before Connect, Publish and Subscribe fail with
// ErrNotConnected; Connect is idempotent; then both work.
func checkNotConnected(t *testing.T, s *suite) {
	topic := s.topic("not-connected")
	b := s.f(t)
	t.Cleanup(func() { disconnect(t, b) })
	if err := publish(b, topic, msg("x")); !errors.Is(err, broker.ErrNotConnected) {
		t.Errorf("Publish before Connect = %v, want ErrNotConnected", err)
	}
	if sub, err := b.Subscribe(topic, nop); !errors.Is(err, broker.ErrNotConnected) {
		t.Errorf("Subscribe before Connect = %v, want ErrNotConnected", err)
		if err == nil {
			await(t, "Unsubscribe", unsubscribe(sub))
		}
	}
	for i := range 2 {
		ctx, cancel := context.WithTimeout(context.Background(), Timeout)
		err := b.Connect(ctx)
		cancel()
		if err != nil {
			t.Fatalf("Connect #%d = %v, want nil (Connect is idempotent)", i+1, err)
		}
	}
	subscribe(t, b, topic, nop)
	if err := publish(b, topic, msg("x")); err != nil {
		t.Fatalf("Publish once connected = %v", err)
	}
}

// checkClosed: Disconnect returns nil, and a disconnected broker refuses
// everything with ErrClosed, Connect included; a subscription it ended can
// still be unsubscribed (Unsubscribe returns).
func checkClosed(t *testing.T, s *suite) {
	topic := s.topic("closed")
	b := s.new(t)
	sub := subscribe(t, b, topic, nop)
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	if err := b.Disconnect(ctx); err != nil {
		t.Fatalf("Disconnect = %v", err)
	}
	if err := publish(b, topic, msg("x")); !errors.Is(err, broker.ErrClosed) {
		t.Errorf("Publish after Disconnect = %v, want ErrClosed", err)
	}
	if sub, err := b.Subscribe(topic, nop); !errors.Is(err, broker.ErrClosed) {
		t.Errorf("Subscribe after Disconnect = %v, want ErrClosed", err)
		if err == nil {
			await(t, "Unsubscribe", unsubscribe(sub))
		}
	}
	if err := b.Connect(ctx); !errors.Is(err, broker.ErrClosed) {
		t.Errorf("Connect after Disconnect = %v, want ErrClosed (a disconnected broker cannot be connected again)", err)
	}
	await(t, "Unsubscribe of a subscription Disconnect ended", unsubscribe(sub))
}

// checkInvalidTopic: empty topics, white space, '/', the NATS wildcards
// and empty tokens between dots are refused with ErrInvalidTopic by Publish and Subscribe.
func checkInvalidTopic(t *testing.T, s *suite) {
	b := s.new(t)
	for _, topic := range []string{"", " ", "a b", "a\tb", "a\nb", "a/b", "*", ">", "a.*", "a.>", "a.*.b", "a*", "a..b", ".a", "a.", "."} {
		if err := publish(b, topic, msg("x")); !errors.Is(err, broker.ErrInvalidTopic) {
			t.Errorf("Publish(%q) = %v, want ErrInvalidTopic", topic, err)
		}
		sub, err := b.Subscribe(topic, nop)
		if !errors.Is(err, broker.ErrInvalidTopic) {
			t.Errorf("Subscribe(%q) = %v, want ErrInvalidTopic", topic, err)
		}
		if err == nil {
			await(t, "Unsubscribe", unsubscribe(sub))
		}
	}
}

// checkUnknownPublishersRefused: a subscription that admits only some
// publishers is refused by a broker that cannot tell who publishes (the
// suite's brokers run without mutual TLS): never silently open to all.
func checkUnknownPublishersRefused(t *testing.T, s *suite) {
	b := s.new(t)
	sub, err := b.Subscribe(s.topic("only-billing"), nop, broker.AllowPublishers("spiffe://example.org/billing"))
	if err == nil {
		await(t, "Unsubscribe", unsubscribe(sub))
		t.Fatal("Subscribe with AllowPublishers succeeded on a broker that cannot tell publishers apart")
	}
}

// checkNoSubscribers: publishing to a topic nobody subscribes to is not
// an error.
func checkNoSubscribers(t *testing.T, s *suite) {
	b := s.new(t)
	for i := range 3 {
		if err := publish(b, s.topic("nobody-listens"), msg(fmt.Sprint(i))); err != nil {
			t.Fatalf("Publish #%d with no subscribers = %v, want nil", i+1, err)
		}
	}
}

// checkBroadcast: every plain subscription of a topic gets every message
// once: subscriptions on other brokers, two on one broker, and one on the
// publishing broker itself.
func checkBroadcast(t *testing.T, s *suite) {
	topic := s.topic("broadcast")
	pub, a, b := s.new(t), s.new(t), s.new(t)
	ins := []*inbox{newInbox(), newInbox(), newInbox(), newInbox()}
	for i, br := range []broker.Broker{a, b, b, pub} {
		sub := subscribe(t, br, topic, ins[i].handle)
		if sub.Topic() != topic || sub.Queue() != "" {
			t.Errorf("Subscriber.Topic(), Queue() = %q, %q, want %q, %q", sub.Topic(), sub.Queue(), topic, "")
		}
	}
	warmUp(t, pub, topic, func() bool { return !slices.ContainsFunc(ins, func(in *inbox) bool { return !in.isWarm() }) })
	const n = 20
	for i := range n {
		body := fmt.Sprint("m", i)
		mustPublish(t, pub, topic, body)
		if s.caps.ReportsHandlerErrors {
			for j, in := range ins {
				if in.count(body) != 1 {
					t.Fatalf("Publish(%q) returned nil before subscription %d handled it (ReportsHandlerErrors)", body, j)
				}
			}
		}
	}
	eventually(t, "every subscription to get every message", func() bool {
		return !slices.ContainsFunc(ins, func(in *inbox) bool { return in.len() < n })
	})
	for j, in := range ins {
		for i := range n {
			if c := in.count(fmt.Sprint("m", i)); c != 1 {
				t.Errorf("subscription %d handled m%d %d times, want once", j, i, c)
			}
		}
	}
}

// checkQueueGroups: with plain subscribers and two queue groups on one
// topic, every plain subscriber gets every message and each group gets
// every message exactly once, spread over its members.
func checkQueueGroups(t *testing.T, s *suite) {
	topic := s.topic("queue")
	pub, plainB := s.new(t), s.new(t)
	plain := newInbox()
	subscribe(t, plainB, topic, plain.handle)
	var workers, audit []*inbox
	var workerBrokers []broker.Broker
	for range 3 {
		in, b := newInbox(), s.new(t)
		sub := subscribe(t, b, topic, in.handle, broker.Queue("workers"))
		if sub.Topic() != topic || sub.Queue() != "workers" {
			t.Errorf("Subscriber.Topic(), Queue() = %q, %q, want %q, %q", sub.Topic(), sub.Queue(), topic, "workers")
		}
		workers, workerBrokers = append(workers, in), append(workerBrokers, b)
	}
	// The second group's members share processes with other subscriptions.
	for _, b := range []broker.Broker{plainB, workerBrokers[0]} {
		in := newInbox()
		subscribe(t, b, topic, in.handle, broker.Queue("audit"))
		audit = append(audit, in)
	}
	anyWarm := func(ins []*inbox) bool { return slices.ContainsFunc(ins, (*inbox).isWarm) }
	warmUp(t, pub, topic, func() bool { return plain.isWarm() && anyWarm(workers) && anyWarm(audit) })
	total := func(ins []*inbox, body string) int {
		n := 0
		for _, in := range ins {
			n += in.count(body)
		}
		return n
	}
	const n = 1000
	for i := range n {
		body := fmt.Sprint("m", i)
		mustPublish(t, pub, topic, body)
		if s.caps.ReportsHandlerErrors && (plain.count(body) != 1 || total(workers, body) != 1 || total(audit, body) != 1) {
			t.Fatalf("Publish(%q) returned nil before the plain subscriber and one member of each group handled it (ReportsHandlerErrors)", body)
		}
	}
	eventually(t, "every message to reach the plain subscriber and both groups", func() bool {
		for i := range n {
			body := fmt.Sprint("m", i)
			if plain.count(body) == 0 || total(workers, body) == 0 || total(audit, body) == 0 {
				return false
			}
		}
		return true
	})
	for i := range n {
		body := fmt.Sprint("m", i)
		if c := plain.count(body); c != 1 {
			t.Fatalf("plain subscriber handled %s %d times, want once", body, c)
		}
		if c := total(workers, body); c != 1 {
			t.Fatalf("queue group workers handled %s %d times, want exactly once", body, c)
		}
		if c := total(audit, body); c != 1 {
			t.Fatalf("queue group audit handled %s %d times, want exactly once", body, c)
		}
	}
	per := make([]int, len(workers))
	for i, in := range workers {
		per[i] = in.len()
	}
	if slices.Contains(per, 0) {
		t.Errorf("a member of the group got nothing of %d messages: %v", n, per)
	}
	t.Logf("per worker: %v", per)
}

// checkNamedSubscriptions: subscriptions that carry one subscriber name
// (two handlers of one service on one topic, as micro gives them) each get
// every message, and a queue group named like a service is not that
// service: it gets every message once, besides.
func checkNamedSubscriptions(t *testing.T, s *suite) {
	topic := s.topic("named")
	name := "brokertest-" + s.run + "-billing"
	pub, svc, other := s.new(t), s.new(t), s.new(t)
	ins := []*inbox{newInbox(), newInbox(), newInbox()}
	subscribe(t, svc, topic, ins[0].handle, broker.SubscriberName(name))
	subscribe(t, svc, topic, ins[1].handle, broker.SubscriberName(name))
	subscribe(t, other, topic, ins[2].handle, broker.SubscriberName("brokertest-"+s.run+"-audit"), broker.Queue(name))
	warmUp(t, pub, topic, func() bool { return !slices.ContainsFunc(ins, func(in *inbox) bool { return !in.isWarm() }) })
	const n = 20
	for i := range n {
		mustPublish(t, pub, topic, fmt.Sprint("m", i))
	}
	eventually(t, "every subscription to get every message", func() bool {
		return !slices.ContainsFunc(ins, func(in *inbox) bool { return in.len() < n })
	})
	for j, in := range ins {
		for i := range n {
			if c := in.count(fmt.Sprint("m", i)); c != 1 {
				t.Errorf("subscription %d handled m%d %d times, want once", j, i, c)
			}
		}
	}
}

// checkHeaders: header keys arrive lower case, PublishOption headers are
// merged over the message's own, bodies arrive byte for byte (binary,
// empty), and the event names its topic.
func checkHeaders(t *testing.T, s *suite) {
	topic := s.topic("headers")
	pub, sub := s.new(t), s.new(t)
	in := newInbox()
	// One at a time, so the messages arrive in the order published.
	subscribe(t, sub, topic, in.handle, broker.MaxConcurrent(1))
	warmUp(t, pub, topic, in.isWarm)
	binary := make([]byte, 256)
	for i := range binary {
		binary[i] = byte(i)
	}
	m := &broker.Message{Header: map[string]string{"Content-Type": "application/json", "X-User-Id": "42", "x-trace": "old"}, Body: []byte(`{"a":1}`)}
	if err := publish(pub, topic, m, broker.WithHeader("X-Trace", "abc"), broker.WithHeader("x-extra", "1")); err != nil {
		t.Fatal(err)
	}
	if err := publish(pub, topic, &broker.Message{Body: binary}); err != nil {
		t.Fatal(err)
	}
	if err := publish(pub, topic, &broker.Message{}); err != nil {
		t.Fatalf("Publish of an empty message = %v", err)
	}
	eventually(t, "three messages", func() bool { return in.len() >= 3 })
	got := in.messages()
	want := map[string]string{"content-type": "application/json", "x-user-id": "42", "x-trace": "abc", "x-extra": "1"}
	for k, v := range want {
		if got[0].Header[k] != v {
			t.Errorf("header %s = %q, want %q (all: %v)", k, got[0].Header[k], v, got[0].Header)
		}
	}
	for k := range got[0].Header {
		if k != strings.ToLower(k) {
			t.Errorf("header key %q is not lower case (all: %v)", k, got[0].Header)
		}
	}
	if string(got[0].Body) != `{"a":1}` {
		t.Errorf("body %q, want %q", got[0].Body, `{"a":1}`)
	}
	if !bytes.Equal(got[1].Body, binary) {
		t.Errorf("binary body arrived as %v", got[1].Body)
	}
	if len(got[2].Body) != 0 {
		t.Errorf("empty body arrived as %q", got[2].Body)
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	for i, tp := range in.topics {
		if tp != topic {
			t.Errorf("event %d: Topic() = %q, want %q", i, tp, topic)
		}
	}
}

// checkTooLarge: a message over the limit (headers count, those of
// PublishOptions too) is refused with ErrMessageTooLarge naming the topic
// and not delivered; one at the limit is delivered.
func checkTooLarge(t *testing.T, s *suite) {
	topic := s.topic("big")
	limit := s.caps.maxMessageSize()
	pub, sub := s.new(t), s.new(t)
	in := newInbox()
	subscribe(t, sub, topic, in.handle, broker.MaxConcurrent(1))
	warmUp(t, pub, topic, in.isWarm)
	err := publish(pub, topic, &broker.Message{Body: make([]byte, limit+1)})
	if !errors.Is(err, broker.ErrMessageTooLarge) || !strings.Contains(err.Error(), topic) {
		t.Errorf("Publish of %d bytes (limit %d) = %v, want ErrMessageTooLarge naming the topic", limit+1, limit, err)
	}
	// Body under the limit, headers over it.
	err = publish(pub, topic, &broker.Message{Body: make([]byte, limit-4)}, broker.WithHeader("x-pad", "0123456789"))
	if !errors.Is(err, broker.ErrMessageTooLarge) {
		t.Errorf("Publish of a %d-byte body with 15 bytes of headers (limit %d) = %v, want ErrMessageTooLarge (headers count)", limit-4, limit, err)
	}
	atLimit := publish(pub, topic, &broker.Message{Body: make([]byte, limit)})
	if atLimit != nil {
		t.Errorf("Publish of exactly %d bytes, the limit = %v, want nil", limit, atLimit)
	}
	mustPublish(t, pub, topic, "after")
	// With MaxConcurrent(1), what was published before "after" is handled
	// before it: by now a refused message would have been, and the one at
	// the limit must have been.
	eventually(t, `the message published after the refused ones`, func() bool { return in.count("after") > 0 })
	delivered := false
	for _, m := range in.messages() {
		switch n := len(m.Body); {
		case n == limit:
			delivered = true
		case string(m.Body) != "after":
			t.Errorf("a refused message (body of %d bytes) was delivered", n)
		}
	}
	if atLimit == nil && !delivered {
		t.Errorf("the message of exactly %d bytes, the limit, was accepted but not delivered", limit)
	}
}

// checkExplicitAck: with DisableAutoAck, Ack returns nil and a handler that
// calls it accepts the delivery; one that forgets it refuses the delivery.
func checkExplicitAck(t *testing.T, s *suite) {
	topic := s.topic("ack")
	pub, sub := s.new(t), s.new(t)
	in := newInbox()
	var ackErrs atomic.Int64
	subscribe(t, sub, topic, func(_ context.Context, e broker.Event) error {
		in.record(e)
		if string(e.Message().Body) == "no-ack" {
			return nil // forgets to Ack
		}
		if err := e.Ack(); err != nil {
			ackErrs.Add(1)
			return err
		}
		return nil
	}, broker.DisableAutoAck(), broker.MaxConcurrent(1))
	warmUp(t, pub, topic, in.isWarm)
	if err := publish(pub, topic, msg("ack")); err != nil {
		t.Fatalf("acknowledged delivery: Publish = %v", err)
	}
	err := publish(pub, topic, msg("no-ack"))
	switch {
	case s.caps.ReportsHandlerErrors && !errors.Is(err, broker.ErrNotDelivered):
		t.Fatalf("delivery the handler did not Ack: Publish = %v, want ErrNotDelivered (ReportsHandlerErrors)", err)
	case !s.caps.ReportsHandlerErrors && err != nil:
		t.Fatalf("Publish = %v", err)
	}
	eventually(t, "both messages handled", func() bool { return in.count("ack") > 0 && in.count("no-ack") > 0 })
	if ackErrs.Load() > 0 {
		t.Fatalf("Event.Ack returned an error %d times", ackErrs.Load())
	}
}

// checkOrder: with MaxConcurrent(1), messages one publisher publishes one
// after another are handled one at a time, in that order.
func checkOrder(t *testing.T, s *suite) {
	topic := s.topic("order")
	pub, sub := s.new(t), s.new(t)
	in := newInbox()
	var running, overlap atomic.Int64
	subscribe(t, sub, topic, func(ctx context.Context, e broker.Event) error {
		if running.Add(1) > 1 {
			overlap.Add(1)
		}
		defer running.Add(-1)
		return in.handle(ctx, e)
	}, broker.MaxConcurrent(1))
	warmUp(t, pub, topic, in.isWarm)
	const n = 300
	for i := range n {
		mustPublish(t, pub, topic, fmt.Sprint(i))
	}
	eventually(t, "every message handled", func() bool { return in.len() >= n })
	got := in.bodies()
	for i, b := range got[:n] {
		if b != fmt.Sprint(i) {
			t.Fatalf("message %d handled in place %d: order lost (...%v)", i, i, got[max(0, i-3):i+1])
		}
	}
	if overlap.Load() > 0 {
		t.Fatalf("%d handler calls overlapped with MaxConcurrent(1)", overlap.Load())
	}
}

// checkMaxConcurrent: a subscription runs up to MaxConcurrent handler calls
// at once, and no more; without the option, DefaultMaxConcurrent.
func checkMaxConcurrent(t *testing.T, s *suite) {
	for _, bound := range []int{3, broker.DefaultMaxConcurrent} {
		t.Run(fmt.Sprint(bound), func(t *testing.T) {
			topic := s.topic(fmt.Sprint("bound-", bound))
			pub, sub := s.new(t), s.new(t)
			g := newGate()
			defer g.open()
			var opts []broker.SubscribeOption
			if bound != broker.DefaultMaxConcurrent {
				opts = append(opts, broker.MaxConcurrent(bound))
			}
			subscribe(t, sub, topic, g.handle, opts...)
			warmUp(t, pub, topic, g.in.isWarm)
			n := bound + 5
			var results []<-chan error
			for i := range n {
				results = append(results, goPublish(t, pub, topic, msg(fmt.Sprint(i))))
			}
			eventually(t, fmt.Sprintf("%d handler calls at once", bound), func() bool { return g.running.Load() >= int64(bound) })
			never(t, fmt.Sprintf("more than %d handler calls at once", bound), func() bool { return g.running.Load() > int64(bound) })
			g.open()
			for i, r := range results {
				if err := await(t, "Publish", r); err != nil {
					t.Errorf("Publish #%d = %v", i, err)
				}
			}
			eventually(t, "every message handled", func() bool { return g.finished.Load() >= int64(n) })
			if p := g.peak.Load(); p > int64(bound) {
				t.Fatalf("%d handler calls at once, bound %d", p, bound)
			}
		})
	}
}

// checkSlowHandler: a subscription whose handler is stuck holds up only
// itself: another subscription of the same topic, on the same broker,
// handles every message meanwhile.
func checkSlowHandler(t *testing.T, s *suite) {
	topic := s.topic("slow")
	pub, sub := s.new(t), s.new(t)
	g := newGate()
	defer g.open()
	fast := newInbox()
	subscribe(t, sub, topic, g.handle, broker.MaxConcurrent(1))
	subscribe(t, sub, topic, fast.handle)
	warmUp(t, pub, topic, func() bool { return g.in.isWarm() && fast.isWarm() })
	const n = 10
	var results []<-chan error
	for i := range n {
		results = append(results, goPublish(t, pub, topic, msg(fmt.Sprint(i))))
	}
	eventually(t, "the slow handler to start", func() bool { return g.started.Load() > 0 })
	eventually(t, "the other subscription to handle every message while the slow one is stuck", func() bool { return fast.len() >= n })
	g.open()
	for i, r := range results {
		if err := await(t, "Publish", r); err != nil {
			t.Errorf("Publish #%d = %v", i, err)
		}
	}
	eventually(t, "the slow subscription to handle every message once released", func() bool { return g.finished.Load() >= n })
}

// held subscribes a gate to a new topic on sub and publishes one message
// from pub that the gate holds.
func held(t *testing.T, s *suite, name string, pub, sub broker.Broker) (*gate, broker.Subscriber, <-chan error) {
	t.Helper()
	topic := s.topic(name)
	g := newGate()
	subscription := subscribe(t, sub, topic, g.handle)
	warmUp(t, pub, topic, g.in.isWarm)
	res := goPublish(t, pub, topic, msg("held"))
	eventually(t, "the handler to start", func() bool { return g.started.Load() > 0 })
	return g, subscription, res
}

// checkUnsubscribeWaits: Unsubscribe returns only once the handler call in
// progress returned, then nil; afterwards the subscription gets nothing.
func checkUnsubscribeWaits(t *testing.T, s *suite) {
	pub, sub, other := s.new(t), s.new(t), s.new(t)
	g, subscription, res := held(t, s, "unsubscribe", pub, sub)
	defer g.open()
	topic := subscription.Topic()
	sentinel := newInbox()
	subscribe(t, other, topic, sentinel.handle)
	warmUp(t, pub, topic, sentinel.isWarm)
	var finishedAtReturn atomic.Int64
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), Timeout)
		defer cancel()
		err := subscription.Unsubscribe(ctx)
		finishedAtReturn.Store(g.finished.Load())
		done <- err
	}()
	if err, ok := returnsWithin(done, grace); ok {
		t.Fatalf("Unsubscribe returned (%v) while a handler call was in progress", err)
	}
	g.open()
	if err := await(t, "Unsubscribe", done); err != nil {
		t.Fatalf("Unsubscribe = %v, want nil", err)
	}
	if finishedAtReturn.Load() == 0 {
		t.Fatal("Unsubscribe returned before the handler call in progress")
	}
	if err := await(t, "the held Publish", res); s.caps.ReportsHandlerErrors && err != nil {
		t.Errorf("Publish of the message handled during Unsubscribe = %v, want nil", err)
	}
	// Nothing more reaches the subscription. A broker that learns about
	// subscribers through discovery may fail a Publish or two while its
	// view catches up; it must end with a Publish that reaches the other
	// subscriber and returns nil.
	started := g.started.Load()
	deadline := time.Now().Add(Timeout)
	for i := 0; ; i++ {
		body := fmt.Sprint("after-", i)
		err := publish(pub, topic, msg(body))
		if err == nil {
			eventually(t, "the remaining subscriber to get "+body, func() bool { return sentinel.count(body) > 0 })
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Publish after Unsubscribe still fails: %v", err)
		}
		t.Logf("Publish right after Unsubscribe: %v", err)
		time.Sleep(poll)
	}
	if n := g.started.Load() - started; n > 0 {
		t.Fatalf("%d messages delivered to a subscription after Unsubscribe returned", n)
	}
}

// checkUnsubscribeContext: when a handler does not return, Unsubscribe
// gives up when its context ends, with an error.
func checkUnsubscribeContext(t *testing.T, s *suite) {
	pub, sub := s.new(t), s.new(t)
	g, subscription, _ := held(t, s, "unsubscribe-ctx", pub, sub)
	defer g.open()
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), grace)
		defer cancel()
		done <- subscription.Unsubscribe(ctx)
	}()
	if err := await(t, "Unsubscribe to give up when its context ended", done); err == nil {
		t.Fatal("Unsubscribe = nil while a handler call was still in progress, want the context's error")
	}
}

// checkDisconnectDrains: Disconnect waits for the handler call in
// progress, then returns nil; the publisher hears the message was handled.
func checkDisconnectDrains(t *testing.T, s *suite) {
	pub, sub := s.new(t), s.new(t)
	g, _, res := held(t, s, "drain", pub, sub)
	defer g.open()
	var finishedAtReturn atomic.Int64
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), Timeout)
		defer cancel()
		err := sub.Disconnect(ctx)
		finishedAtReturn.Store(g.finished.Load())
		done <- err
	}()
	if err, ok := returnsWithin(done, grace); ok {
		t.Fatalf("Disconnect returned (%v) while a handler call was in progress", err)
	}
	g.open()
	if err := await(t, "Disconnect", done); err != nil {
		t.Fatalf("Disconnect = %v, want nil", err)
	}
	if finishedAtReturn.Load() == 0 {
		t.Fatal("Disconnect returned before the handler call in progress")
	}
	if err := await(t, "the held Publish", res); s.caps.ReportsHandlerErrors && err != nil {
		t.Errorf("Publish of the message handled during Disconnect = %v, want nil", err)
	}
}

// checkDisconnectContext: when a handler does not return, Disconnect gives
// up when its context ends, with an error.
func checkDisconnectContext(t *testing.T, s *suite) {
	pub, sub := s.new(t), s.new(t)
	g, _, _ := held(t, s, "disconnect-ctx", pub, sub)
	defer g.open()
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), grace)
		defer cancel()
		done <- sub.Disconnect(ctx)
	}()
	if err := await(t, "Disconnect to give up when its context ended", done); err == nil {
		t.Fatal("Disconnect = nil while a handler call was still in progress, want the context's error")
	}
}

// checkHandlerError: a handler's error comes back from Publish, wrapping
// ErrNotDelivered and naming the topic.
func checkHandlerError(t *testing.T, s *suite) {
	topic := s.topic("fails")
	pub, sub := s.new(t), s.new(t)
	in := newInbox()
	subscribe(t, sub, topic, func(ctx context.Context, e broker.Event) error {
		if isWarm(e.Message()) {
			return in.handle(ctx, e)
		}
		return errors.New("cannot handle this")
	})
	warmUp(t, pub, topic, in.isWarm)
	err := publish(pub, topic, msg("x"))
	if !errors.Is(err, broker.ErrNotDelivered) || !strings.Contains(err.Error(), "cannot handle this") || !strings.Contains(err.Error(), topic) {
		t.Fatalf("Publish = %v, want ErrNotDelivered with the handler's error and the topic", err)
	}
}

// checkQueueFailover: a message a queue member refuses goes to another
// member within the same Publish; when every member refuses, Publish fails
// with ErrNotDelivered naming the topic and the group.
func checkQueueFailover(t *testing.T, s *suite) {
	refuse := func(context.Context, broker.Event) error { return errors.New("member refuses") }
	t.Run("OneMemberRefuses", func(t *testing.T) {
		topic := s.topic("failover")
		pub, good, bad := s.new(t), s.new(t), s.new(t)
		in := newInbox()
		subscribe(t, good, topic, in.handle, broker.Queue("workers"))
		subscribe(t, bad, topic, refuse, broker.Queue("workers"))
		warmUp(t, pub, topic, in.isWarm)
		const n = 20
		for i := range n {
			body := fmt.Sprint("m", i)
			if err := publish(pub, topic, msg(body)); err != nil {
				t.Fatalf("Publish(%q) with one working member = %v, want nil", body, err)
			}
			if in.count(body) != 1 {
				t.Fatalf("Publish(%q) returned nil, the working member handled it %d times", body, in.count(body))
			}
		}
	})
	t.Run("EveryMemberRefuses", func(t *testing.T) {
		topic := s.topic("no-member")
		pub, a, b := s.new(t), s.new(t), s.new(t)
		var warm [2]atomic.Bool
		for i, br := range []broker.Broker{a, b} {
			subscribe(t, br, topic, func(ctx context.Context, e broker.Event) error {
				if isWarm(e.Message()) {
					warm[i].Store(true)
				}
				return refuse(ctx, e)
			}, broker.Queue("doomed"))
		}
		deadline := time.Now().Add(Timeout)
		for {
			err := publish(pub, topic, msg(warmPrefix))
			if warm[0].Load() || warm[1].Load() {
				if !errors.Is(err, broker.ErrNotDelivered) || !strings.Contains(err.Error(), topic) || !strings.Contains(err.Error(), "doomed") {
					t.Fatalf("Publish = %v, want ErrNotDelivered naming the topic and the group", err)
				}
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("no member of the group reached within %v", Timeout)
			}
			time.Sleep(poll)
		}
	})
}

// checkRedelivery: a refused delivery comes again (handler error, missing
// Ack), one rejected with ErrRejected does not.
func checkRedelivery(t *testing.T, s *suite) {
	topic := s.topic("redeliver")
	pub, sub := s.new(t), s.new(t)
	in := newInbox()
	var mu sync.Mutex
	attempts := map[string]int{}
	subscribe(t, sub, topic, func(ctx context.Context, e broker.Event) error {
		body := string(e.Message().Body)
		mu.Lock()
		attempts[body]++
		n := attempts[body]
		mu.Unlock()
		switch {
		case body == "fail-once" && n == 1:
			return errors.New("refused once")
		case body == "no-ack-once" && n == 1:
			return nil // without Ack: refused
		case body == "reject":
			return fmt.Errorf("never handled: %w", broker.ErrRejected)
		case body == "fail-twice" && n <= 2:
			return errors.New("refused")
		}
		in.record(e)
		return e.Ack()
	}, broker.DisableAutoAck(), broker.MaxConcurrent(1))
	warmUp(t, pub, topic, in.isWarm)
	for _, body := range []string{"fail-once", "no-ack-once", "reject", "fail-twice"} {
		mustPublish(t, pub, topic, body)
	}
	eventually(t, "the refused messages to come again and be handled", func() bool {
		return in.count("fail-once") > 0 && in.count("no-ack-once") > 0 && in.count("fail-twice") > 0
	})
	// "reject" was refused before "fail-twice" was refused twice: had it
	// been redelivered like a refused message, it would have come by now.
	mu.Lock()
	defer mu.Unlock()
	if n := attempts["reject"]; n != 1 {
		t.Fatalf("a message rejected with ErrRejected was delivered %d times, want once", n)
	}
}

// checkNamedKeepsPlace: a named subscription gets what was published
// before it first subscribed, and, subscribed again from another broker
// after Unsubscribe, resumes where it stopped.
func checkNamedKeepsPlace(t *testing.T, s *suite) {
	topic := s.topic("durable")
	name := "brokertest-" + s.run + "-keeper"
	pub := s.new(t)
	for i := range 5 {
		mustPublish(t, pub, topic, fmt.Sprint("a", i))
	}
	first := newInbox()
	sub := subscribe(t, s.new(t), topic, first.handle, broker.SubscriberName(name), broker.MaxConcurrent(1))
	eventually(t, "the messages published before the subscription", func() bool { return first.len() >= 5 })
	if got, want := first.bodies(), []string{"a0", "a1", "a2", "a3", "a4"}; !slices.Equal(got, want) {
		t.Fatalf("first subscription handled %v, want %v", got, want)
	}
	if err := await(t, "Unsubscribe", unsubscribe(sub)); err != nil {
		t.Fatalf("Unsubscribe = %v", err)
	}
	for i := range 5 {
		mustPublish(t, pub, topic, fmt.Sprint("b", i))
	}
	again := newInbox()
	subscribe(t, s.new(t), topic, again.handle, broker.SubscriberName(name), broker.MaxConcurrent(1))
	eventually(t, "the messages published while unsubscribed", func() bool { return again.len() >= 5 })
	if got, want := again.bodies()[:5], []string{"b0", "b1", "b2", "b3", "b4"}; !slices.Equal(got, want) {
		t.Fatalf("subscribed again, handled %v, want %v: not resumed where it stopped", got, want)
	}
}

// checkEphemeral: an Ephemeral subscription gets only what is published
// while it runs.
func checkEphemeral(t *testing.T, s *suite) {
	topic := s.topic("ephemeral")
	pub, sub := s.new(t), s.new(t)
	mustPublish(t, pub, topic, "old")
	in := newInbox()
	subscribe(t, sub, topic, in.handle, broker.Ephemeral(), broker.SubscriberName("brokertest-"+s.run+"-ephemeral"), broker.MaxConcurrent(1))
	mustPublish(t, pub, topic, "new")
	eventually(t, "the message published while subscribed", func() bool { return in.count("new") > 0 })
	// Stored messages are handled in order: "old" would have come first.
	if got := in.bodies(); got[0] != "new" {
		t.Fatalf("ephemeral subscription handled %v, want only what was published while it ran", got)
	}
}
