package broker_test

import (
	"context"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
	rawjs "github.com/nats-io/nats.go/jetstream"

	"github.com/microgrpc/microgrpc/broker"
	jsbroker "github.com/microgrpc/microgrpc/broker/jetstream"
	"github.com/microgrpc/microgrpc/internal/natstest"
	"github.com/microgrpc/microgrpc/micro"
	"github.com/microgrpc/microgrpc/micro/pubsub"
	pb "github.com/microgrpc/microgrpc/proto/greeter"
	"github.com/microgrpc/microgrpc/resolver/memory"
)

// rawJetStreamPipe is nats.go's jetstream alone, the baseline: PublishAsync
// with at most 256 acknowledgements pending, every PubAck waited for, and a
// consumer that acknowledges each message; file storage, like ours. Its
// rounds are rawJetStreamRound, since its futures are not channels of
// errors.
func rawJetStreamPipe(b *testing.B, url string) (*pipe, rawjs.JetStream) {
	pubc, err := natsgo.Connect(url)
	if err != nil {
		b.Fatal(err)
	}
	subc, err := natsgo.Connect(url)
	if err != nil {
		b.Fatal(err)
	}
	js, err := rawjs.New(pubc, rawjs.WithPublishAsyncMaxPending(256))
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := js.CreateOrUpdateStream(ctx, rawjs.StreamConfig{Name: "RAWBENCH", Subjects: []string{"bench.rawjs"}, Storage: rawjs.FileStorage}); err != nil {
		b.Fatal(err)
	}
	sjs, err := rawjs.New(subc)
	if err != nil {
		b.Fatal(err)
	}
	cons, err := sjs.CreateOrUpdateConsumer(ctx, "RAWBENCH", rawjs.ConsumerConfig{AckPolicy: rawjs.AckExplicitPolicy, DeliverPolicy: rawjs.DeliverNewPolicy, InactiveThreshold: time.Minute})
	if err != nil {
		b.Fatal(err)
	}
	p := &pipe{name: "raw-jetstream"}
	cc, err := cons.Consume(func(m rawjs.Msg) {
		p.handle()
		m.Ack()
	})
	if err != nil {
		b.Fatal(err)
	}
	p.close = func() { cc.Stop(); pubc.Close(); subc.Close() }
	return p, js
}

// rawJetStreamRound is pipe.round for the baseline: each publishing
// goroutine keeps up to asyncDepth futures and waits for the oldest
// first, as an async pipe does with its channels.
func rawJetStreamRound(b *testing.B, p *pipe, js rawjs.JetStream, n, publishers int, measure bool) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	want := p.handled.Load() + int64(n)
	var cpu0 time.Duration
	var m0 uint64
	if measure {
		m0 = mallocs()
		cpu0 = cpuTime()
	}
	start := time.Now()
	var wg sync.WaitGroup
	var failed atomic.Value
	hdr := natsgo.Header{"Content-Type": {"application/protobuf"}}
	for g := range publishers {
		share := n / publishers
		if g < n%publishers {
			share++
		}
		wg.Go(func() {
			var pending []rawjs.PubAckFuture
			wait := func() bool {
				f := pending[0]
				pending = pending[1:]
				select {
				case <-f.Ok():
					return true
				case err := <-f.Err():
					failed.Store(err)
				case <-ctx.Done():
					failed.Store(ctx.Err())
				}
				return false
			}
			defer func() {
				for len(pending) > 0 {
					wait()
				}
			}()
			for range share {
				select {
				case p.window <- struct{}{}:
				case <-ctx.Done():
					return
				}
				if len(pending) == asyncDepth && !wait() {
					return
				}
				f, err := js.PublishMsgAsync(&natsgo.Msg{Subject: "bench.rawjs", Header: hdr, Data: payload})
				if err != nil {
					failed.Store(err)
					return
				}
				pending = append(pending, f)
			}
		})
	}
	wg.Wait()
	if err, _ := failed.Load().(error); err != nil {
		b.Fatalf("%s: %v", p.name, err)
	}
	for p.handled.Load() < want {
		if ctx.Err() != nil {
			b.Fatalf("%s: handled %d of %d", p.name, p.handled.Load()-(want-int64(n)), n)
		}
		time.Sleep(20 * time.Microsecond)
	}
	if measure {
		p.took += time.Since(start)
		p.cpu += cpuTime() - cpu0
		p.allocs += mallocs() - m0
		p.msgs += n
	}
}

// microJetStreamPipes are our jetstream broker the way a user writes it:
// a micro publisher (Publish, each goroutine waiting for its
// acknowledgement; or PublishAsync) and a running micro service that
// subscribes with a typed handler, each with a broker of its own.
func microJetStreamPipes(b *testing.B, url string) (waiting, async *pipe) {
	mk := func() broker.Broker {
		return jsbroker.NewBroker(jsbroker.WithURLs(url), jsbroker.WithLogger(quiet))
	}
	reg := memory.NewRegistry()
	pubBroker, subBroker := mk(), mk()
	pubSvc := micro.NewService(micro.WithName("bench-pub"), micro.WithRegistry(reg), micro.WithBroker(pubBroker), micro.WithLogger(quiet))
	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan struct{})
	subSvc := micro.NewService(micro.WithName("bench-sub"), micro.WithAddress("127.0.0.1:0"), micro.WithRegistry(reg),
		micro.WithBroker(subBroker), micro.WithContext(ctx), micro.WithSignal(false), micro.WithDeregisterWait(0), micro.WithLogger(quiet),
		micro.WithAfterStart(func(context.Context) error { close(started); return nil }))
	waiting = &pipe{name: "jetstream"}
	async = &pipe{name: "jetstream-async"}
	for _, p := range []*pipe{waiting, async} {
		topic := "bench.micro-" + p.name
		if err := pubsub.RegisterSubscriber(topic, subSvc, func(context.Context, *pb.Event) error { p.handle(); return nil }); err != nil {
			b.Fatal(err)
		}
		pub := pubsub.NewPublisher(topic, pubSvc)
		ev := &pb.Event{Id: "1", Message: string(payload)}
		p.publish = func(ctx context.Context, _ []byte) error { return pub.Publish(ctx, ev) }
		p.async = func(ctx context.Context, _ []byte) <-chan error { return pub.PublishAsync(ctx, ev) }
	}
	waiting.async = nil
	async.publish = nil
	done := make(chan error, 1)
	go func() { done <- subSvc.Run() }()
	select {
	case <-started:
	case err := <-done:
		b.Fatal(err)
	}
	stop := sync.OnceFunc(func() {
		cancel()
		<-done
		pubSvc.Close()
		dctx, dcancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer dcancel()
		pubBroker.Disconnect(dctx)
		subBroker.Disconnect(dctx)
	})
	waiting.close, async.close = stop, stop
	return waiting, async
}

// brokerJetStreamPipe is our jetstream broker without micro (no codec,
// no typed handler): broker.PublishAsync and a plain handler, to tell
// what the broker costs from what micro's encoding and dispatch add.
func brokerJetStreamPipe(b *testing.B, url string) *pipe {
	mk := func() broker.Broker {
		br := jsbroker.NewBroker(jsbroker.WithURLs(url), jsbroker.WithLogger(quiet))
		if err := br.Connect(context.Background()); err != nil {
			b.Fatal(err)
		}
		return br
	}
	pub, sub := mk(), mk()
	p := &pipe{name: "jetstream-broker-async"}
	if _, err := sub.Subscribe("bench.js-broker", func(context.Context, broker.Event) error { p.handle(); return nil }, broker.SubscriberName("bench")); err != nil {
		b.Fatal(err)
	}
	hdr := map[string]string{"content-type": "application/protobuf"}
	p.async = func(ctx context.Context, body []byte) <-chan error {
		return broker.PublishAsync(ctx, pub, "bench.js-broker", &broker.Message{Header: hdr, Body: body})
	}
	p.close = func() {
		pub.Disconnect(context.Background())
		sub.Disconnect(context.Background())
	}
	return p
}

// BenchmarkJetStreamPublishHandled measures publish->handled throughput
// of 1 KiB messages through JetStream with file storage, 16 publishing
// goroutines and at most 256 messages in flight, publisher and subscriber
// in one process: raw nats.go jetstream (PublishAsync, every PubAck waited
// for, each message acknowledged by its consumer) against our jetstream
// broker through micro's Publish (each goroutine waits for its
// acknowledgement) and PublishAsync, the path a user writes, and the
// broker alone through broker.PublishAsync, in interleaved rounds of one
// run. It reports msgs/s, CPU microseconds and
// allocations per message (the whole process) and the ratios
// jetstream/raw and jetstream-async/raw.
func BenchmarkJetStreamPublishHandled(b *testing.B) {
	srv, err := natstest.StartJetStream(b.TempDir(), -1)
	if err != nil {
		b.Fatal(err)
	}
	defer natstest.Stop(srv)
	const publishers, window = 16, 256
	raw, js := rawJetStreamPipe(b, srv.ClientURL())
	defer raw.close()
	waiting, async := microJetStreamPipes(b, srv.ClientURL())
	defer waiting.close()
	bare := brokerJetStreamPipe(b, srv.ClientURL())
	defer bare.close()
	ours := []*pipe{waiting, async, bare}
	for _, p := range append([]*pipe{raw}, ours...) {
		p.window = make(chan struct{}, window)
	}
	rawJetStreamRound(b, raw, js, 200, publishers, false) // warm: streams, consumers, connections
	for _, p := range ours {
		p.round(b, 200, publishers, false)
	}
	const n = 4000
	for b.Loop() {
		rawJetStreamRound(b, raw, js, n, publishers, true)
		for _, p := range ours {
			p.round(b, n, publishers, true)
		}
	}
	line := ""
	for _, p := range append([]*pipe{raw}, ours...) {
		cpu, allocs := float64(p.cpu.Microseconds())/float64(p.msgs), float64(p.allocs)/float64(p.msgs)
		b.ReportMetric(p.rate(), p.name+"-msgs/s")
		b.ReportMetric(cpu, p.name+"-cpu-µs/msg")
		b.ReportMetric(allocs, p.name+"-allocs/msg")
		line += fmt.Sprintf("%s %.0f/s %.1fµs %.0fallocs; ", p.name, p.rate(), cpu, allocs)
	}
	b.ReportMetric(waiting.rate()/raw.rate(), "jetstream/raw")
	b.ReportMetric(async.rate()/raw.rate(), "jetstream-async/raw")
	b.ReportMetric(bare.rate()/raw.rate(), "jetstream-broker-async/raw")
	fmt.Fprintf(os.Stderr, "publishers=%d: %sjetstream/raw %.3f, jetstream-async/raw %.3f, jetstream-broker-async/raw %.3f\n",
		publishers, line, waiting.rate()/raw.rate(), async.rate()/raw.rate(), bare.rate()/raw.rate())
}
