package nats_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/microgrpc/microgrpc/broker"
	"github.com/microgrpc/microgrpc/broker/brokertest"
	natsbroker "github.com/microgrpc/microgrpc/broker/nats"
	"github.com/microgrpc/microgrpc/internal/natstest"
)

var url string

func TestMain(m *testing.M) {
	srv, err := natstest.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	url = srv.ClientURL()
	code := m.Run()
	natstest.Stop(srv)
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

var quiet = slog.New(slog.DiscardHandler)

func factory(t *testing.T) broker.Broker {
	return natsbroker.NewBroker(natsbroker.WithURLs(url), natsbroker.WithLogger(quiet))
}

func TestConformance(t *testing.T) {
	// NATS core promises only the common contract: at most once, and a
	// handler's result never reaches the publisher.
	brokertest.Run(t, factory, brokertest.Caps{})
}

func TestConnectFailureIsClear(t *testing.T) {
	b := natsbroker.NewBroker(natsbroker.WithURLs("nats://127.0.0.1:1"), natsbroker.WithLogger(quiet))
	err := b.Connect(context.Background())
	if err == nil {
		b.Disconnect(context.Background())
		t.Fatal("connected to a closed port")
	}
}

func TestURLsFromEnv(t *testing.T) {
	got := natsbroker.URLsFromEnv(func(string) (string, bool) { return "nats://a:1, nats://b:2", true })
	if fmt.Sprint(got) != "[nats://a:1 nats://b:2]" {
		t.Fatal(got)
	}
}

// The broker survives a server restart: the reconnect is logged and
// subscriptions and publishing work again.
func TestReconnectAfterServerRestart(t *testing.T) {
	srv, err := natstest.Start()
	if err != nil {
		t.Fatal(err)
	}
	port := srv.Addr().(*net.TCPAddr).Port
	var logs syncBuffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	url := srv.ClientURL()
	mk := func(*testing.T) broker.Broker {
		return natsbroker.NewBroker(natsbroker.WithURLs(url), natsbroker.WithLogger(logger))
	}
	pub, sub := brokertest.New(t, mk), brokertest.New(t, mk)
	got := make(chan string, 16)
	if _, err := sub.Subscribe("restart", func(_ context.Context, e broker.Event) error {
		got <- string(e.Message().Body)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	natstest.Stop(srv)
	srv2, err := natstest.StartOn(port)
	if err != nil {
		t.Fatal(err)
	}
	defer natstest.Stop(srv2)
	deadline := time.Now().Add(brokertest.Timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		pub.Publish(ctx, "restart", &broker.Message{Body: []byte("after")})
		cancel()
		select {
		case b := <-got:
			if b != "after" {
				t.Fatalf("got %q", b)
			}
			if !strings.Contains(logs.String(), "reconnected") {
				t.Fatalf("reconnect not logged:\n%s", logs.String())
			}
			return
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("no delivery after the restart; log:\n%s", logs.String())
		}
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// PublishAsync keeps the promise of Publish per message: every nil result
// means the server had the message, so a subscriber on another connection
// gets each of them; the results of bad publishes are errors.
func TestPublishAsync(t *testing.T) {
	ctx := context.Background()
	pub, sub := brokertest.New(t, factory), brokertest.New(t, factory)
	var got atomic.Int64
	if _, err := sub.Subscribe("async", func(context.Context, broker.Event) error { got.Add(1); return nil }); err != nil {
		t.Fatal(err)
	}
	if _, ok := pub.(broker.AsyncPublisher); !ok {
		t.Fatal("the nats broker is not a broker.AsyncPublisher")
	}
	const n = 2000
	acks := make([]<-chan error, n)
	for i := range acks {
		acks[i] = broker.PublishAsync(ctx, pub, "async", &broker.Message{Body: []byte("m")})
	}
	for i, ack := range acks {
		if err := <-ack; err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
	}
	deadline := time.Now().Add(brokertest.Timeout)
	for got.Load() < n && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if got.Load() != n {
		t.Fatalf("handled %d of %d acknowledged messages", got.Load(), n)
	}

	cases := []struct {
		topic string
		m     *broker.Message
		want  error
	}{
		{"a.*", &broker.Message{}, broker.ErrInvalidTopic},
		{"big", &broker.Message{Body: make([]byte, 2<<20)}, broker.ErrMessageTooLarge},
	}
	for _, c := range cases {
		if err := <-broker.PublishAsync(ctx, pub, c.topic, c.m); !errors.Is(err, c.want) {
			t.Errorf("%s: got %v, want %v", c.topic, err, c.want)
		}
	}
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	if err := <-broker.PublishAsync(canceled, pub, "async", &broker.Message{}); !errors.Is(err, context.Canceled) {
		t.Errorf("canceled ctx: got %v", err)
	}
}

// Disconnect answers every publish still waiting for its flush: none is
// left without a result, and each nil result was received.
func TestPublishAsyncThenDisconnect(t *testing.T) {
	ctx := context.Background()
	sub := brokertest.New(t, factory)
	pub := factory(t)
	if err := pub.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	var got atomic.Int64
	if _, err := sub.Subscribe("async.stop", func(context.Context, broker.Event) error { got.Add(1); return nil }); err != nil {
		t.Fatal(err)
	}
	acks := make([]<-chan error, 5000)
	for i := range acks {
		acks[i] = broker.PublishAsync(ctx, pub, "async.stop", &broker.Message{Body: []byte("m")})
	}
	if err := pub.Disconnect(ctx); err != nil {
		t.Fatal(err)
	}
	ok := 0
	timeout := time.After(brokertest.Timeout)
	for i, ack := range acks {
		select {
		case err := <-ack:
			if err == nil {
				ok++
			}
		case <-timeout:
			t.Fatalf("publish %d has no result after Disconnect", i)
		}
	}
	if err := <-broker.PublishAsync(ctx, pub, "async.stop", &broker.Message{}); !errors.Is(err, broker.ErrClosed) {
		t.Errorf("after Disconnect: got %v, want ErrClosed", err)
	}
	deadline := time.Now().Add(brokertest.Timeout)
	for got.Load() < int64(ok) && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if got.Load() < int64(ok) {
		t.Fatalf("%d publishes acknowledged, %d handled", ok, got.Load())
	}
	t.Logf("%d of %d acknowledged before Disconnect returned, %d handled", ok, len(acks), got.Load())
}

// Disconnect keeps to its ctx even when handlers never return and the
// subscription's queue is full: it reports them and does not wait.
func TestDisconnectBoundedWithStuckHandlers(t *testing.T) {
	ctx := context.Background()
	pub := brokertest.New(t, factory)
	sub := factory(t)
	if err := sub.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	var started atomic.Int64
	if _, err := sub.Subscribe("stuck", func(context.Context, broker.Event) error {
		started.Add(1)
		<-release
		return nil
	}, broker.MaxConcurrent(2)); err != nil {
		t.Fatal(err)
	}
	for range 10 {
		if err := pub.Publish(ctx, "stuck", &broker.Message{Body: []byte("m")}); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(brokertest.Timeout)
	for started.Load() < 2 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	dctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := sub.Disconnect(dctx)
	took := time.Since(start)
	close(release)
	if err == nil {
		t.Fatal("Disconnect with stuck handlers returned nil")
	}
	if took > 3*time.Second {
		t.Fatalf("Disconnect took %v with a 300 ms ctx", took)
	}
	t.Logf("Disconnect returned after %v: %v", took, err)
}
