package broker_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	natsgo "github.com/nats-io/nats.go"
	"go.uber.org/goleak"

	"github.com/microgrpc/microgrpc/broker"
	httpbroker "github.com/microgrpc/microgrpc/broker/http"
	natsbroker "github.com/microgrpc/microgrpc/broker/nats"
	"github.com/microgrpc/microgrpc/internal/natstest"
	"github.com/microgrpc/microgrpc/resolver/memory"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// pipe is one way to get a 1 KB message from a publisher to a handler.
type pipe struct {
	publish func(ctx context.Context, body []byte) error
	flush   func(ctx context.Context) error // after a batch; nil if Publish already waits
	handled atomic.Int64
	close   func()
}

var payload = make([]byte, 1024)

func httpPipe(b *testing.B) *pipe {
	reg := memory.NewRegistry()
	quiet := slog.New(slog.DiscardHandler)
	mk := func() broker.Broker {
		br := httpbroker.NewBroker(httpbroker.WithRegistry(reg), httpbroker.WithAddress("127.0.0.1:0"), httpbroker.WithLogger(quiet))
		if err := br.Connect(context.Background()); err != nil {
			b.Fatal(err)
		}
		return br
	}
	pub, sub := mk(), mk()
	p := &pipe{}
	if _, err := sub.Subscribe("bench", func(context.Context, broker.Event) error { p.handled.Add(1); return nil }); err != nil {
		b.Fatal(err)
	}
	p.publish = func(ctx context.Context, body []byte) error {
		return pub.Publish(ctx, "bench", &broker.Message{Body: body})
	}
	p.close = func() {
		pub.Disconnect(context.Background())
		sub.Disconnect(context.Background())
	}
	return p
}

func natsPipe(b *testing.B, srv *server.Server) *pipe {
	quiet := slog.New(slog.DiscardHandler)
	pub := natsbroker.NewBroker(natsbroker.WithURLs(srv.ClientURL()), natsbroker.WithLogger(quiet))
	sub := natsbroker.NewBroker(natsbroker.WithURLs(srv.ClientURL()), natsbroker.WithLogger(quiet))
	for _, br := range []broker.Broker{pub, sub} {
		if err := br.Connect(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
	p := &pipe{}
	if _, err := sub.Subscribe("bench.nats", func(context.Context, broker.Event) error { p.handled.Add(1); return nil }); err != nil {
		b.Fatal(err)
	}
	p.publish = func(ctx context.Context, body []byte) error {
		return pub.Publish(ctx, "bench.nats", &broker.Message{Header: map[string]string{"content-type": "application/protobuf"}, Body: body})
	}
	p.close = func() {
		pub.Disconnect(context.Background())
		sub.Disconnect(context.Background())
	}
	return p
}

// rawPipe is nats.go alone: publish without waiting, flush once per batch.
func rawPipe(b *testing.B, srv *server.Server) *pipe {
	pub, err := natsgo.Connect(srv.ClientURL())
	if err != nil {
		b.Fatal(err)
	}
	subc, err := natsgo.Connect(srv.ClientURL())
	if err != nil {
		b.Fatal(err)
	}
	p := &pipe{}
	if _, err := subc.Subscribe("bench.raw", func(*natsgo.Msg) { p.handled.Add(1) }); err != nil {
		b.Fatal(err)
	}
	subc.Flush()
	p.publish = func(_ context.Context, body []byte) error {
		return pub.PublishMsg(&natsgo.Msg{Subject: "bench.raw", Header: natsgo.Header{"content-type": {"application/protobuf"}}, Data: body})
	}
	p.flush = func(ctx context.Context) error { return pub.FlushWithContext(ctx) }
	p.close = func() { pub.Close(); subc.Close() }
	return p
}

// rawFlushPipe is nats.go alone with the guarantee our broker gives:
// every Publish waits until the server has the message.
func rawFlushPipe(b *testing.B, srv *server.Server) *pipe {
	p := rawPipe(b, srv)
	publish, flush := p.publish, p.flush
	p.publish = func(ctx context.Context, body []byte) error {
		if err := publish(ctx, body); err != nil {
			return err
		}
		return flush(ctx)
	}
	p.flush = nil
	return p
}

// run publishes n messages and waits until all are handled.
func (p *pipe) run(b *testing.B, n int) time.Duration {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	start := time.Now()
	want := p.handled.Load() + int64(n)
	for range n {
		if err := p.publish(ctx, payload); err != nil {
			b.Fatal(err)
		}
	}
	if p.flush != nil {
		if err := p.flush(ctx); err != nil {
			b.Fatal(err)
		}
	}
	for p.handled.Load() < want {
		if ctx.Err() != nil {
			b.Fatalf("handled %d of %d", p.handled.Load(), want)
		}
		time.Sleep(50 * time.Microsecond)
	}
	return time.Since(start)
}

// BenchmarkPublishHandled reports publish→handled messages/s for 1 KB
// messages through the http broker, the nats broker and nats.go alone, and
// each broker's throughput as a fraction of raw nats.go's, measured in
// interleaved rounds of one run. Our nats Publish flushes (a nil error means
// the server has the message), so nats/raw-flush-each compares like with
// like; nats/raw shows what that guarantee costs against fire-and-forget.
func BenchmarkPublishHandled(b *testing.B) {
	srv, err := natstest.Start()
	if err != nil {
		b.Fatal(err)
	}
	defer natstest.Stop(srv)
	pipes := map[string]*pipe{"http": httpPipe(b), "nats": natsPipe(b, srv), "raw-nats.go": rawPipe(b, srv), "raw-nats.go-flush-each": rawFlushPipe(b, srv)}
	defer func() {
		for _, p := range pipes {
			p.close()
		}
	}()
	for _, p := range pipes {
		p.run(b, 10) // warm: discovery, connections
	}
	const round = 200
	took := map[string]time.Duration{}
	msgs := 0
	for b.Loop() {
		for name, p := range pipes {
			took[name] += p.run(b, round)
		}
		msgs += round
	}
	for name, d := range took {
		b.ReportMetric(float64(msgs)/d.Seconds(), name+"-msgs/s")
	}
	raw := took["raw-nats.go"].Seconds()
	b.ReportMetric(raw/took["http"].Seconds(), "http/raw")
	b.ReportMetric(raw/took["nats"].Seconds(), "nats/raw")
	b.ReportMetric(took["raw-nats.go-flush-each"].Seconds()/took["nats"].Seconds(), "nats/raw-flush-each")
	fmt.Fprintf(os.Stderr, "1 KB publish->handled: http %.0f/s, nats %.0f/s, raw nats.go %.0f/s (http/raw %.3f, nats/raw %.3f)\n",
		float64(msgs)/took["http"].Seconds(), float64(msgs)/took["nats"].Seconds(), float64(msgs)/raw,
		raw/took["http"].Seconds(), raw/took["nats"].Seconds())
}
