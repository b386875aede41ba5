package jetstream_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"go.uber.org/goleak"

	"github.com/microgrpc/microgrpc/broker"
	"github.com/microgrpc/microgrpc/broker/brokertest"
	"github.com/microgrpc/microgrpc/broker/jetstream"
	"github.com/microgrpc/microgrpc/internal/natstest"
)

const defaultTestTimeout = 30 * time.Second

var url string

// Environment of the helper subscriber process (the test binary itself).
const (
	envHelper = "MICRO_JETSTREAM_TEST_SUBSCRIBER"
	envURL    = "MICRO_JETSTREAM_TEST_URL"
	envTopic  = "MICRO_JETSTREAM_TEST_TOPIC"
	envQueue  = "MICRO_JETSTREAM_TEST_QUEUE"
	envName   = "MICRO_JETSTREAM_TEST_NAME"
	envStuck  = "MICRO_JETSTREAM_TEST_STUCK" // handlers never finish: killed mid-message
)

func TestMain(m *testing.M) {
	if os.Getenv(envHelper) != "" {
		os.Exit(subscriberProcess())
	}
	if role := os.Getenv(envRole); role != "" {
		os.Exit(clusterHelper(role))
	}
	dir, err := os.MkdirTemp("", "jetstream-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	srv, err := natstest.StartJetStream(dir, -1)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	url = srv.ClientURL()
	code := m.Run()
	natstest.Stop(srv)
	os.RemoveAll(dir)
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// subscriberProcess subscribes as the environment says and prints
// "handled <body>" for each message before acknowledging it, until its
// standard input closes (or a minute passes). It is killed with SIGKILL
// by the tests about dying subscribers.
func subscriberProcess() int {
	// The default ack wait: the tests of dying subscribers measure it.
	b := jetstream.NewBroker(jetstream.WithURLs(os.Getenv(envURL)),
		jetstream.WithBackoff(50*time.Millisecond, 200*time.Millisecond), jetstream.WithLogger(slog.New(slog.DiscardHandler)))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := b.Connect(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	var mu sync.Mutex
	opts := []broker.SubscribeOption{broker.SubscriberName(os.Getenv(envName))}
	if q := os.Getenv(envQueue); q != "" {
		opts = append(opts, broker.Queue(q))
	}
	stuck := os.Getenv(envStuck) != ""
	_, err := b.Subscribe(os.Getenv(envTopic), func(ctx context.Context, e broker.Event) error {
		mu.Lock()
		fmt.Fprintf(os.Stdout, "start %s\n", e.Message().Body)
		mu.Unlock()
		if stuck {
			<-ctx.Done() // until killed
			return ctx.Err()
		}
		time.Sleep(time.Millisecond) // be mid-message when killed
		mu.Lock()
		defer mu.Unlock()
		_, err := fmt.Fprintf(os.Stdout, "handled %s\n", e.Message().Body)
		return err
	}, opts...)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Fprintln(os.Stdout, "ready")
	go func() {
		io.Copy(io.Discard, os.Stdin)
		cancel()
	}()
	<-ctx.Done()
	dctx, dcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer dcancel()
	b.Disconnect(dctx)
	return 0
}

// child is a subscriber process; seen collects what all children handled.
type child struct {
	*proc
	started chan string // bodies it began to handle; buffered, extra ones dropped
}

type seen struct {
	mu     sync.Mutex
	counts map[string]int
}

func (s *seen) add(body string) {
	s.mu.Lock()
	s.counts[body]++
	s.mu.Unlock()
}

func (s *seen) has(body string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counts[body] > 0
}

// startChild starts a subscriber process of topic (queue may be "").
func startChild(t *testing.T, s *seen, topic, queue, name string, env ...string) *child {
	t.Helper()
	c := &child{started: make(chan string, 1024)}
	env = append([]string{envHelper + "=1", envURL + "=" + url, envTopic + "=" + topic, envQueue + "=" + queue, envName + "=" + name}, env...)
	c.proc = startProc(t, "", func(line string) {
		if body, ok := strings.CutPrefix(line, "handled "); ok {
			s.add(body)
		} else if body, ok := strings.CutPrefix(line, "start "); ok {
			select {
			case c.started <- body:
			default:
			}
		}
	}, env...)
	c.waitReady(t, "subscriber process")
	return c
}

var quiet = slog.New(slog.DiscardHandler)

func newBroker(t *testing.T, opts ...jetstream.Option) broker.Broker {
	t.Helper()
	all := append([]jetstream.Option{jetstream.WithURLs(url), jetstream.WithLogger(quiet),
		jetstream.WithBackoff(10*time.Millisecond, 100*time.Millisecond), jetstream.WithAckWait(2 * time.Second)}, opts...)
	return brokertest.New(t, func(*testing.T) broker.Broker { return jetstream.NewBroker(all...) })
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), defaultTestTimeout)
	t.Cleanup(cancel)
	return ctx
}

func waitAll(t *testing.T, s *seen, bodies []string, what string) {
	t.Helper()
	deadline := time.Now().Add(defaultTestTimeout)
	for _, body := range bodies {
		for !s.has(body) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: acknowledged message %s never handled", what, body)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// The suite's topics are new on every run, so the streams and durable
// consumers an earlier run (-count=2) left on the shared server do not
// interfere. A short backoff keeps the redelivery checks quick.
func TestConformance(t *testing.T) {
	brokertest.Run(t, func(*testing.T) broker.Broker {
		return jetstream.NewBroker(jetstream.WithURLs(url), jetstream.WithLogger(quiet), jetstream.WithBackoff(10*time.Millisecond, 100*time.Millisecond))
	}, brokertest.Caps{RedeliversRefused: true, Durable: true})
}

// Published while no subscriber runs, then handled by one started later
// in another process: all of it.
func TestBacklogHandledByLateSubscriber(t *testing.T) {
	pub := newBroker(t)
	const n = 1000
	bodies := make([]string, n)
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		bodies[i] = fmt.Sprint("b", i)
		wg.Go(func() { errs[i] = pub.Publish(testCtx(t), "backlog", &broker.Message{Body: []byte(bodies[i])}) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	s := &seen{counts: map[string]int{}}
	startChild(t, s, "backlog", "", "late-service")
	waitAll(t, s, bodies, "late subscriber")
}

// A queue group of three processes, one killed with SIGKILL while it holds
// messages it began to handle: every message whose Publish returned nil is
// handled at least once, those the killed member held by the others within
// about the default ack wait. While it lived, its handlers that never
// finish kept their messages (reported in progress).
func TestQueueMemberKilledNothingAckedLost(t *testing.T) {
	s := &seen{counts: map[string]int{}}
	// kids[0] never finishes a message, as if frozen mid-handler.
	kids := []*child{startChild(t, s, "killq", "workers", "", envStuck+"=1")}
	for range 2 {
		kids = append(kids, startChild(t, s, "killq", "workers", ""))
	}
	pub := newBroker(t)
	var (
		mu     sync.Mutex
		acked  []string
		failed int
	)
	publish := func(from, to int) {
		var wg sync.WaitGroup
		for i := from; i < to; i++ {
			wg.Go(func() {
				body := fmt.Sprint("k", i)
				err := pub.Publish(testCtx(t), "killq", &broker.Message{Body: []byte(body)})
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					failed++
					return
				}
				acked = append(acked, body)
			})
		}
		wg.Wait()
	}
	publish(0, 200)
	// Kill the stuck member once it holds a message.
	var held string
	select {
	case held = <-kids[0].started:
	case <-time.After(defaultTestTimeout):
		t.Fatal("the stuck member was given no message")
	}
	kids[0].kill()
	killedAt := time.Now()
	var heldAll []string
	for done := false; !done; {
		select {
		case b := <-kids[0].started:
			heldAll = append(heldAll, b)
		default:
			done = true
		}
	}
	heldAll = append(heldAll, held)
	publish(200, 600)
	waitAll(t, s, acked, "queue group with a killed member")
	waitAll(t, s, heldAll, "messages the killed member held")
	took := time.Since(killedAt)
	// The default ack wait is a few seconds (it was NATS's 30 s).
	if limit := 10 * time.Second; took > limit {
		t.Errorf("the killed member's messages were handled elsewhere %v after the kill, want within about the ack wait (%v)", took, jetstream.DefaultAckWait)
	}
	s.mu.Lock()
	dups := 0
	for _, c := range s.counts {
		dups += c - 1
	}
	s.mu.Unlock()
	t.Logf("%d acknowledged (%d publishes failed), all handled; the killed member held %d, handled by the others %v after the kill; %d handled twice",
		len(acked), failed, len(heldAll), took.Round(time.Millisecond), dups)
}

// The NATS server stopped and restarted on the same store mid-stream:
// nothing acknowledged to a publisher is lost.
func TestServerRestartNothingAckedLost(t *testing.T) {
	dir := t.TempDir()
	srv, err := natstest.StartJetStream(dir, -1)
	if err != nil {
		t.Fatal(err)
	}
	port := srv.Addr().(*net.TCPAddr).Port
	surl := srv.ClientURL()
	mk := func() broker.Broker {
		return brokertest.New(t, func(*testing.T) broker.Broker {
			return jetstream.NewBroker(jetstream.WithURLs(surl), jetstream.WithLogger(quiet), jetstream.WithAckWait(2*time.Second))
		})
	}
	pub, sub := mk(), mk()
	s := &seen{counts: map[string]int{}}
	if _, err := sub.Subscribe("restart", func(_ context.Context, e broker.Event) error {
		s.add(string(e.Message().Body))
		return nil
	}, broker.SubscriberName("restart-service")); err != nil {
		t.Fatal(err)
	}
	var acked []string
	failed := 0
	restarted := make(chan error, 1)
	var srv2 *server.Server
	for i := range 400 {
		if i == 150 {
			// Down for half a second while the publisher goes on.
			natstest.Stop(srv)
			go func() {
				time.Sleep(500 * time.Millisecond)
				var err error
				srv2, err = natstest.StartJetStream(dir, port)
				restarted <- err
			}()
		}
		body := fmt.Sprint("r", i)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err := pub.Publish(ctx, "restart", &broker.Message{Body: []byte(body)})
		cancel()
		if err != nil {
			failed++
			continue
		}
		acked = append(acked, body)
	}
	if err := <-restarted; err != nil {
		t.Fatal(err)
	}
	waitAll(t, s, acked, "after a server restart")
	// Disconnect before the server goes, then stop it.
	for _, b := range []broker.Broker{pub, sub} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		b.Disconnect(ctx)
		cancel()
	}
	natstest.Stop(srv2)
	t.Logf("%d acknowledged, all handled; %d publishes failed while the server was down", len(acked), failed)
	if len(acked) < 300 {
		t.Fatalf("only %d of 400 publishes acknowledged: publishing did not resume after the restart", len(acked))
	}
}

// A handler that always fails: the message is tried the maximum number
// of times, then goes to the dead-letter subject with headers that say
// why.
func TestAlwaysFailingHandlerDeadLettered(t *testing.T) {
	b := newBroker(t, jetstream.WithMaxDeliver(3), jetstream.WithDeadLetter("poison.dead"))
	var attempts atomic.Int64
	if _, err := b.Subscribe("poison", func(context.Context, broker.Event) error {
		attempts.Add(1)
		return errors.New("cannot handle this")
	}, broker.SubscriberName("poison-service")); err != nil {
		t.Fatal(err)
	}
	dead := make(chan *broker.Message, 4)
	if _, err := b.Subscribe("poison.dead", func(_ context.Context, e broker.Event) error {
		dead <- e.Message()
		return nil
	}, broker.SubscriberName("dead-letters")); err != nil {
		t.Fatal(err)
	}
	if err := b.Publish(testCtx(t), "poison", &broker.Message{Header: map[string]string{"x-id": "7"}, Body: []byte("bad")}); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-dead:
		if got := attempts.Load(); got != 3 {
			t.Fatalf("dead-lettered after %d attempts, want 3", got)
		}
		want := map[string]string{jetstream.HeaderDeadLetterTopic: "poison", jetstream.HeaderDeliveries: "3", "x-id": "7"}
		for k, v := range want {
			if m.Header[k] != v {
				t.Errorf("dead letter header %s = %q, want %q (all: %v)", k, m.Header[k], v, m.Header)
			}
		}
		if !strings.Contains(m.Header[jetstream.HeaderDeadLetterError], "cannot handle this") || string(m.Body) != "bad" {
			t.Errorf("dead letter %v %q", m.Header, m.Body)
		}
	case <-testCtx(t).Done():
		t.Fatalf("nothing dead-lettered after %d attempts", attempts.Load())
	}
	time.Sleep(300 * time.Millisecond) // a fourth attempt would come now
	if got := attempts.Load(); got != 3 {
		t.Fatalf("%d attempts, want 3", got)
	}
}

// A message the handler rejects for good (it does not decode, say) is not
// tried again: terminated and dead-lettered at once.
func TestRejectedMessageNotRetried(t *testing.T) {
	b := newBroker(t, jetstream.WithMaxDeliver(5), jetstream.WithDeadLetter("reject.dead"))
	var attempts atomic.Int64
	if _, err := b.Subscribe("reject", func(context.Context, broker.Event) error {
		attempts.Add(1)
		return fmt.Errorf("does not decode: %w", broker.ErrRejected)
	}, broker.SubscriberName("reject-service")); err != nil {
		t.Fatal(err)
	}
	dead := make(chan *broker.Message, 4)
	if _, err := b.Subscribe("reject.dead", func(_ context.Context, e broker.Event) error {
		dead <- e.Message()
		return nil
	}, broker.SubscriberName("dead-letters")); err != nil {
		t.Fatal(err)
	}
	if err := b.Publish(testCtx(t), "reject", &broker.Message{Body: []byte("{")}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-dead:
	case <-testCtx(t).Done():
		t.Fatal("not dead-lettered")
	}
	if got := attempts.Load(); got != 1 {
		t.Fatalf("%d attempts for a rejected message, want 1", got)
	}
}

func TestBadOptionsAndNoServer(t *testing.T) {
	for _, opt := range []jetstream.Option{jetstream.WithMaxDeliver(0), jetstream.WithAckWait(0), jetstream.WithDeadLetter("a b"), jetstream.WithStreamPrefix("a.b")} {
		b := jetstream.NewBroker(jetstream.WithURLs(url), opt)
		if err := b.Connect(testCtx(t)); !errors.Is(err, jetstream.ErrInvalidOption) {
			b.Disconnect(testCtx(t))
			t.Errorf("Connect = %v, want ErrInvalidOption", err)
		}
	}
	b := jetstream.NewBroker(jetstream.WithURLs("nats://127.0.0.1:1"), jetstream.WithConnectTimeout(time.Second))
	if err := b.Connect(testCtx(t)); err == nil || !strings.Contains(err.Error(), "127.0.0.1:1") {
		b.Disconnect(testCtx(t))
		t.Fatalf("Connect to nothing = %v, want an error naming the address", err)
	}
}
