package brokertest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/microgrpc/microgrpc/broker"
)

// Timeout bounds every wait of the suite: each Connect, Publish,
// Unsubscribe and Disconnect it makes runs under a context of this
// timeout, and each condition it waits for (a message handled, a handler
// started) must hold within it. Plugin tests use it for their own waits.
const Timeout = 10 * time.Second

// Caps says what the brokers of a Factory promise beyond what every
// broker must do; the checks of a promise a broker does not make are
// skipped. The zero value is a broker that promises only the common
// contract (broker/nats is one).
type Caps struct {
	// ReportsHandlerErrors: Publish returns only once every subscriber,
	// and one member of every queue group, handled the message; a handler
	// error (or a missing Ack with DisableAutoAck) comes back from Publish
	// as an error wrapping broker.ErrNotDelivered that names the topic;
	// and a queue group fails over to another member when one refuses.
	// broker/direct and broker/memory set it; NATS core and JetStream cannot
	// tell the publisher what a handler did.
	ReportsHandlerErrors bool
	// RedeliversRefused: a delivery the handler refuses (returns an error,
	// or returns without Ack under DisableAutoAck) is delivered again
	// later, except that one refused with an error wrapping
	// broker.ErrRejected is not. broker/jetstream sets it.
	RedeliversRefused bool
	// Durable: messages are stored. A subscription named with
	// broker.SubscriberName gets what was published to its topic before it
	// first subscribed, and a named subscription that unsubscribes and
	// subscribes again (from another broker, as a restarted process would)
	// resumes where it stopped; a broker.Ephemeral one gets only what is
	// published while it runs. broker/jetstream sets it.
	Durable bool
	// MaxMessageSize is the largest message (broker.Message.Size: body
	// plus headers) the Factory's brokers accept; 0 means
	// broker.DefaultMaxMessageSize, which every built-in broker uses
	// unless configured otherwise.
	MaxMessageSize int
}

func (c Caps) maxMessageSize() int {
	if c.MaxMessageSize > 0 {
		return c.MaxMessageSize
	}
	return broker.DefaultMaxMessageSize
}

// Factory returns a new broker, not connected yet, for one role of a check
// (publisher, subscriber, queue member). The brokers it returns must reach
// one another: the ones built on a server share the server, the ones that
// find each other through a registry share the registry. The suite
// connects each broker (except in the check of ErrNotConnected, which
// connects it later) and disconnects it when the check ends.
//
// A broker whose instances cannot reach one another (an in-process one,
// like broker/memory) may return the same instance to every call made
// with the same t; the first call of each check gets a new one. The suite
// is written so that this works: Connect is idempotent, and when a check
// disconnects a broker it uses no other broker of that check afterwards,
// except in the checks for Caps.Durable.
type Factory func(t *testing.T) broker.Broker

// New returns a broker from f, connected, and disconnects it when t's
// test ends (an error from that Disconnect is logged, not failed: tests
// that stop a broker's server before the end see one).
func New(t *testing.T, f Factory) broker.Broker {
	t.Helper()
	b := f(t)
	t.Cleanup(func() { disconnect(t, b) })
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	if err := b.Connect(ctx); err != nil {
		t.Fatalf("%s broker: Connect: %v", b, err)
	}
	return b
}

func disconnect(t *testing.T, b broker.Broker) {
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	if err := b.Disconnect(ctx); err != nil {
		t.Logf("%s broker: Disconnect at the end of the test: %v", b, err)
	}
}

// Run runs the suite on the brokers f makes, one subtest per check.
func Run(t *testing.T, f Factory, caps Caps) {
	s := &suite{f: f, caps: caps, run: runID()}
	checks := []struct {
		name string
		run  func(*testing.T, *suite)
		when bool
	}{
		{"NotConnected", checkNotConnected, true},
		{"ClosedAfterDisconnect", checkClosed, true},
		{"InvalidTopic", checkInvalidTopic, true},
		{"NoSubscribersIsNotAnError", checkNoSubscribers, true},
		{"UnknownPublishersRefused", checkUnknownPublishersRefused, true},
		{"Broadcast", checkBroadcast, true},
		{"QueueGroups", checkQueueGroups, true},
		{"NamedSubscriptionsEachGetEverything", checkNamedSubscriptions, true},
		{"HeadersAndBodySurvive", checkHeaders, true},
		{"MessageTooLarge", checkTooLarge, true},
		{"ExplicitAck", checkExplicitAck, true},
		{"InOrderWithMaxConcurrentOne", checkOrder, true},
		{"MaxConcurrentBound", checkMaxConcurrent, true},
		{"SlowHandlerHoldsUpOnlyItsSubscription", checkSlowHandler, true},
		{"UnsubscribeWaitsForHandlers", checkUnsubscribeWaits, true},
		{"UnsubscribeGivesUpWithContext", checkUnsubscribeContext, true},
		{"DisconnectDrains", checkDisconnectDrains, true},
		{"DisconnectGivesUpWithContext", checkDisconnectContext, true},
		{"HandlerErrorReachesPublisher", checkHandlerError, caps.ReportsHandlerErrors},
		{"QueueGroupFailsOver", checkQueueFailover, caps.ReportsHandlerErrors},
		{"RefusedIsRedelivered", checkRedelivery, caps.RedeliversRefused},
		{"NamedSubscriptionKeepsItsPlace", checkNamedKeepsPlace, caps.Durable},
		{"EphemeralGetsOnlyNewMessages", checkEphemeral, caps.Durable},
	}
	for _, c := range checks {
		if c.when {
			t.Run(c.name, func(t *testing.T) { c.run(t, s) })
		}
	}
}

// suite is one Run.
type suite struct {
	f    Factory
	caps Caps
	// run is a random token in every topic and subscriber name of this
	// Run: a durable broker's server keeps streams and consumers across
	// runs (go test -count=2), and a check must not see an earlier run's
	// messages.
	run string
}

func runID() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// topic is a check's topic: valid for every broker (no '.', which NATS
// splits on, no '/', '*', '>' or space).
func (s *suite) topic(name string) string { return "brokertest-" + s.run + "-" + name }

// new is New with the suite's factory.
func (s *suite) new(t *testing.T) broker.Broker {
	t.Helper()
	return New(t, s.f)
}

// poll is how often the suite looks again at a condition it waits for.
const poll = 5 * time.Millisecond

// grace is how long the suite watches for something that must not happen
// (an extra handler call starting past the MaxConcurrent bound, an
// Unsubscribe returning while a handler runs). Polling cannot prove that
// something does not happen, so these checks give the broker this long
// to misbehave; a broker that does it later is not caught, but none is
// failed wrongly.
const grace = 100 * time.Millisecond

// eventually waits, within Timeout, for cond.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(Timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", Timeout, what)
		}
		time.Sleep(poll)
	}
}

// never fails if cond holds at any time during grace.
func never(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(grace)
	for time.Now().Before(deadline) {
		if cond() {
			t.Fatal(what)
		}
		time.Sleep(poll)
	}
}

func publish(b broker.Broker, topic string, m *broker.Message, opts ...broker.PublishOption) error {
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	return b.Publish(ctx, topic, m, opts...)
}

func mustPublish(t *testing.T, b broker.Broker, topic string, body string) {
	t.Helper()
	if err := publish(b, topic, msg(body)); err != nil {
		t.Fatalf("Publish(%q, %q) = %v", topic, body, err)
	}
}

func msg(body string) *broker.Message { return &broker.Message{Body: []byte(body)} }

// goPublish publishes on a goroutine, for brokers whose Publish waits for
// a handler the check holds; the result arrives on the channel. The test
// waits for the goroutine at its end (the Publish is bounded by Timeout),
// so none outlives it.
func goPublish(t *testing.T, b broker.Broker, topic string, m *broker.Message) <-chan error {
	res := make(chan error, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		res <- publish(b, topic, m)
	}()
	t.Cleanup(func() { <-done })
	return res
}

// await returns what ch delivers, failing if nothing comes within Timeout.
func await[T any](t *testing.T, what string, ch <-chan T) T {
	t.Helper()
	timer := time.NewTimer(Timeout)
	defer timer.Stop()
	select {
	case v := <-ch:
		return v
	case <-timer.C:
		t.Fatalf("timed out after %v waiting for %s", Timeout, what)
	}
	var zero T
	return zero
}

// returnsWithin reports whether ch delivers within d, and what.
func returnsWithin[T any](ch <-chan T, d time.Duration) (T, bool) {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case v := <-ch:
		return v, true
	case <-timer.C:
		var zero T
		return zero, false
	}
}

// warmPrefix starts the bodies of warm-up messages, which handlers take
// at once and checks do not count.
const warmPrefix = "brokertest-warm-up"

func isWarm(m *broker.Message) bool { return strings.HasPrefix(string(m.Body), warmPrefix) }

// warmUp publishes warm-up messages until ready holds: a broker that
// learns about subscribers through discovery may not reach a subscription
// the moment Subscribe returns, and the checks start counting once it
// does.
func warmUp(t *testing.T, pub broker.Broker, topic string, ready func() bool) {
	t.Helper()
	deadline := time.Now().Add(Timeout)
	for i := 0; ; i++ {
		if err := publish(pub, topic, msg(fmt.Sprint(warmPrefix, i))); err != nil {
			t.Fatalf("warm-up Publish to %q: %v", topic, err)
		}
		// Give this message a while to arrive before sending another.
		for range 20 {
			if ready() {
				return
			}
			time.Sleep(poll)
		}
		if time.Now().After(deadline) {
			t.Fatalf("no subscriber of %q reached within %v (%d warm-up messages)", topic, Timeout, i+1)
		}
	}
}

// inbox records what a subscription handled, warm-up messages apart.
type inbox struct {
	mu     sync.Mutex
	warm   bool
	order  []*broker.Message
	topics []string
	counts map[string]int // by body
}

func newInbox() *inbox { return &inbox{counts: map[string]int{}} }

// handle is a handler that records the event and accepts it.
func (in *inbox) handle(_ context.Context, e broker.Event) error {
	in.record(e)
	return nil
}

func (in *inbox) record(e broker.Event) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if isWarm(e.Message()) {
		in.warm = true
		return
	}
	in.order = append(in.order, e.Message())
	in.topics = append(in.topics, e.Topic())
	in.counts[string(e.Message().Body)]++
}

func (in *inbox) isWarm() bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.warm
}

func (in *inbox) len() int {
	in.mu.Lock()
	defer in.mu.Unlock()
	return len(in.order)
}

func (in *inbox) count(body string) int {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.counts[body]
}

func (in *inbox) bodies() []string {
	in.mu.Lock()
	defer in.mu.Unlock()
	out := make([]string, len(in.order))
	for i, m := range in.order {
		out[i] = string(m.Body)
	}
	return out
}

func (in *inbox) messages() []*broker.Message {
	in.mu.Lock()
	defer in.mu.Unlock()
	return append([]*broker.Message(nil), in.order...)
}

// gate is a handler that holds every message (warm-up ones apart) until
// opened, counting the calls. It ignores its context on purpose: the
// checks of Unsubscribe and Disconnect need a handler that does not give
// up by itself.
type gate struct {
	in       *inbox // warm-up only
	release  chan struct{}
	once     sync.Once
	running  atomic.Int64
	peak     atomic.Int64
	started  atomic.Int64
	finished atomic.Int64
}

func newGate() *gate { return &gate{in: newInbox(), release: make(chan struct{})} }

func (g *gate) open() { g.once.Do(func() { close(g.release) }) }

func (g *gate) handle(ctx context.Context, e broker.Event) error {
	if isWarm(e.Message()) {
		return g.in.handle(ctx, e)
	}
	n := g.running.Add(1)
	g.started.Add(1)
	for p := g.peak.Load(); n > p && !g.peak.CompareAndSwap(p, n); p = g.peak.Load() {
	}
	<-g.release
	g.finished.Add(1)
	g.running.Add(-1)
	return nil
}

func nop(context.Context, broker.Event) error { return nil }

func subscribe(t *testing.T, b broker.Broker, topic string, h broker.Handler, opts ...broker.SubscribeOption) broker.Subscriber {
	t.Helper()
	sub, err := b.Subscribe(topic, h, opts...)
	if err != nil {
		t.Fatalf("%s broker: Subscribe(%q): %v", b, topic, err)
	}
	return sub
}

func unsubscribe(sub broker.Subscriber) <-chan error {
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), Timeout)
		defer cancel()
		done <- sub.Unsubscribe(ctx)
	}()
	return done
}
