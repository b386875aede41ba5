package jetstream_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
	rawjs "github.com/nats-io/nats.go/jetstream"

	"github.com/microgrpc/microgrpc/broker"
	"github.com/microgrpc/microgrpc/broker/brokertest"
	"github.com/microgrpc/microgrpc/broker/jetstream"
	"github.com/microgrpc/microgrpc/internal/natstest"
)

// token makes topics and names of one test run its own: the shared
// server keeps streams and consumers across runs (-count=2).
func token() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// When Unsubscribe gives up on handlers that do not finish in time, no
// handler starts after it returned (deliveries already pulled were
// started with a cancelled context, and WaitGroup.Add raced Wait), and
// what was not handled comes again, to the next subscription of the name.
func TestNothingStartsAfterUnsubscribeGaveUp(t *testing.T) {
	run := token()
	topic, name := "edge-stop-"+run, "edge-stop-svc-"+run
	pub := newBroker(t)
	const n = 40
	for i := range n {
		if err := pub.Publish(testCtx(t), topic, &broker.Message{Body: []byte(fmt.Sprint("s", i))}); err != nil {
			t.Fatal(err)
		}
	}
	var running, late atomic.Int64
	var returned atomic.Bool
	sub, err := newBroker(t).Subscribe(topic, func(ctx context.Context, _ broker.Event) error {
		if returned.Load() {
			late.Add(1)
		}
		running.Add(1)
		defer running.Add(-1)
		<-ctx.Done() // holds its slot until Unsubscribe gives up
		return ctx.Err()
	}, broker.SubscriberName(name), broker.MaxConcurrent(4))
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(defaultTestTimeout)
	for running.Load() < 4 {
		if time.Now().After(deadline) {
			t.Fatalf("%d handlers running, want 4", running.Load())
		}
		time.Sleep(5 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	err = sub.Unsubscribe(ctx)
	cancel()
	returned.Store(true)
	if err == nil {
		t.Fatal("Unsubscribe = nil while handlers ran past its context")
	}
	time.Sleep(500 * time.Millisecond)
	if l := late.Load(); l > 0 {
		t.Fatalf("%d handlers started after Unsubscribe returned", l)
	}
	// Nothing was acknowledged: the next subscription of the name gets
	// every message.
	s := &seen{counts: map[string]int{}}
	if _, err := newBroker(t).Subscribe(topic, func(_ context.Context, e broker.Event) error {
		s.add(string(e.Message().Body))
		return nil
	}, broker.SubscriberName(name)); err != nil {
		t.Fatal(err)
	}
	bodies := make([]string, n)
	for i := range bodies {
		bodies[i] = fmt.Sprint("s", i)
	}
	waitAll(t, s, bodies, "after an Unsubscribe that gave up")
}

// A stream that disappears is made again, by publishers and subscribers
// alike: after an operator deletes it, and after a server with memory
// storage restarts.
func TestLostStreamMadeAgain(t *testing.T) {
	for _, tc := range []struct {
		name    string
		storage rawjs.StorageType
		lose    func(t *testing.T, srv *natstest.Restartable, stream string)
	}{
		{"DeletedByOperator", rawjs.FileStorage, func(t *testing.T, srv *natstest.Restartable, stream string) {
			nc, err := natsgo.Connect(srv.URL())
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			js, _ := rawjs.New(nc)
			if err := js.DeleteStream(testCtx(t), stream); err != nil {
				t.Fatal(err)
			}
		}},
		{"MemoryServerRestarted", rawjs.MemoryStorage, func(t *testing.T, srv *natstest.Restartable, _ string) {
			if err := srv.Restart(); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := startRestartable(t)
			mk := func() broker.Broker {
				return brokertest.New(t, func(*testing.T) broker.Broker {
					return jetstream.NewBroker(jetstream.WithURLs(srv.URL()), jetstream.WithLogger(quiet),
						jetstream.WithStreamDefaults(rawjs.StreamConfig{Storage: tc.storage}))
				})
			}
			pub, sub := mk(), mk()
			s := &seen{counts: map[string]int{}}
			if _, err := sub.Subscribe("lost", func(_ context.Context, e broker.Event) error {
				s.add(string(e.Message().Body))
				return nil
			}, broker.SubscriberName("lost-service")); err != nil {
				t.Fatal(err)
			}
			if err := pub.Publish(testCtx(t), "lost", &broker.Message{Body: []byte("before")}); err != nil {
				t.Fatal(err)
			}
			waitAll(t, s, []string{"before"}, "before the stream was lost")
			tc.lose(t, srv, jetstream.DefaultStreamPrefix+"_lost")
			lostAt := time.Now()
			var acked []string
			failed := 0
			for i := 0; len(acked) < 20; i++ {
				if time.Since(lostAt) > 15*time.Second {
					t.Fatalf("%d publishes failed in %v after the stream was lost, %d stored", failed, time.Since(lostAt), len(acked))
				}
				body := fmt.Sprint("after", i)
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				err := pub.Publish(ctx, "lost", &broker.Message{Body: []byte(body)})
				cancel()
				if err != nil {
					if failed < 3 {
						t.Logf("publish %v after the loss: %v", time.Since(lostAt).Round(time.Millisecond), err)
					}
					failed++
					time.Sleep(50 * time.Millisecond)
					continue
				}
				if len(acked) == 0 {
					t.Logf("first publish stored %v after the stream was lost (%d failed before)", time.Since(lostAt).Round(time.Millisecond), failed)
				}
				acked = append(acked, body)
			}
			waitAll(t, s, acked, "published after the stream was made again")
		})
	}
}

// A Publish (or PublishAsync) whose acknowledgement never comes ends when
// Disconnect gives up on it: nats.go does not resolve its future when the
// connection closes.
func TestPublishEndsWithDisconnect(t *testing.T) {
	srv := startRestartable(t)
	b := jetstream.NewBroker(jetstream.WithURLs(srv.URL()), jetstream.WithLogger(quiet))
	if err := b.Connect(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	if err := b.Publish(testCtx(t), "hang", &broker.Message{Body: []byte("stored")}); err != nil {
		t.Fatal(err)
	}
	srv.Stop() // no acknowledgement comes any more
	sync := make(chan error, 1)
	go func() { sync <- b.Publish(context.Background(), "hang", &broker.Message{Body: []byte("never")}) }()
	async := broker.PublishAsync(context.Background(), b, "hang", &broker.Message{Body: []byte("never either")})
	time.Sleep(200 * time.Millisecond) // both are waiting
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	b.Disconnect(ctx)
	cancel()
	for what, ch := range map[string]<-chan error{"Publish": sync, "PublishAsync": async} {
		select {
		case err := <-ch:
			if err == nil {
				t.Errorf("%s = nil for a message never acknowledged", what)
			}
			t.Logf("%s after Disconnect: %v", what, err)
		case <-time.After(5 * time.Second):
			t.Fatalf("%s still waiting 5s after Disconnect returned", what)
		}
	}
}

func startRestartable(t *testing.T) *natstest.Restartable {
	t.Helper()
	srv, err := natstest.StartRestartable(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	return srv
}

// A handler that runs for three ack waits is not delivered again: the
// broker reports it in progress while it runs, to the other member of its
// queue group as much as to itself.
func TestLongHandlerNotRedelivered(t *testing.T) {
	run := token()
	topic := "edge-long-" + run
	const ackWait = time.Second
	var h broker.Handler
	var starts, holder atomic.Int64
	done := make(chan struct{}, 4)
	handler := func(member int64) broker.Handler {
		return func(ctx context.Context, e broker.Event) error {
			holder.Store(member)
			return h(ctx, e)
		}
	}
	h = func(ctx context.Context, _ broker.Event) error {
		starts.Add(1)
		timer := time.NewTimer(3 * ackWait)
		defer timer.Stop()
		select {
		case <-timer.C:
		case <-ctx.Done():
			return ctx.Err()
		}
		done <- struct{}{}
		return nil
	}
	var subs []broker.Subscriber
	for i := range 2 {
		sub, err := newBroker(t, jetstream.WithAckWait(ackWait)).Subscribe(topic, handler(int64(i)), broker.Queue("long-"+run))
		if err != nil {
			t.Fatal(err)
		}
		subs = append(subs, sub)
	}
	pub := newBroker(t)
	if err := pub.Publish(testCtx(t), topic, &broker.Message{Body: []byte("slow")}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-testCtx(t).Done():
		t.Fatal("the long handler never finished")
	}
	time.Sleep(ackWait + ackWait/2) // a redelivery would have started by now
	if n := starts.Load(); n != 1 {
		t.Fatalf("handler started %d times for one message that took 3x the ack wait, want once", n)
	}
	// The same while Unsubscribe waits for the handler: its member stops
	// taking messages, and the other one would get a redelivery.
	if err := pub.Publish(testCtx(t), topic, &broker.Message{Body: []byte("slow while stopping")}); err != nil {
		t.Fatal(err)
	}
	for starts.Load() < 2 {
		time.Sleep(5 * time.Millisecond)
	}
	if err := subs[holder.Load()].Unsubscribe(testCtx(t)); err != nil {
		t.Fatalf("Unsubscribe: %v", err)
	}
	time.Sleep(ackWait / 2)
	if n := starts.Load(); n != 2 {
		t.Fatalf("handler started %d times for two messages, want twice: the one being handled while Unsubscribe waited came again", n)
	}
}

// PublishAsync is the broker's own (broker.AsyncPublisher): many in
// flight from one goroutine, each result on its channel, every stored
// message handled; bad input is an error on the channel.
func TestPublishAsync(t *testing.T) {
	run := token()
	topic := "edge-async-" + run
	b := newBroker(t)
	if _, ok := b.(broker.AsyncPublisher); !ok {
		t.Fatal("the jetstream broker does not implement broker.AsyncPublisher")
	}
	s := &seen{counts: map[string]int{}}
	if _, err := newBroker(t).Subscribe(topic, func(_ context.Context, e broker.Event) error {
		s.add(string(e.Message().Body))
		return nil
	}, broker.SubscriberName("async-"+run)); err != nil {
		t.Fatal(err)
	}
	const n = 500
	bodies := make([]string, n)
	results := make([]<-chan error, n)
	for i := range n {
		bodies[i] = fmt.Sprint("a", i)
		results[i] = broker.PublishAsync(testCtx(t), b, topic, &broker.Message{Header: map[string]string{"x-i": fmt.Sprint(i)}, Body: []byte(bodies[i])})
	}
	for i, res := range results {
		select {
		case err := <-res:
			if err != nil {
				t.Fatalf("PublishAsync #%d: %v", i, err)
			}
		case <-testCtx(t).Done():
			t.Fatalf("PublishAsync #%d: no result", i)
		}
	}
	waitAll(t, s, bodies, "published with PublishAsync")
	if err := <-broker.PublishAsync(testCtx(t), b, "a..b", &broker.Message{}); !errors.Is(err, broker.ErrInvalidTopic) {
		t.Errorf("PublishAsync to a..b = %v, want ErrInvalidTopic", err)
	}
	unconnected := jetstream.NewBroker(jetstream.WithURLs(url))
	if err := <-broker.PublishAsync(testCtx(t), unconnected, topic, &broker.Message{}); !errors.Is(err, broker.ErrNotConnected) {
		t.Errorf("PublishAsync before Connect = %v, want ErrNotConnected", err)
	}
}
