package broker_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	natsgo "github.com/nats-io/nats.go"
	"go.uber.org/goleak"

	"github.com/microgrpc/microgrpc/broker"
	"github.com/microgrpc/microgrpc/broker/direct"
	jsbroker "github.com/microgrpc/microgrpc/broker/jetstream"
	natsbroker "github.com/microgrpc/microgrpc/broker/nats"
	"github.com/microgrpc/microgrpc/internal/natstest"
	"github.com/microgrpc/microgrpc/resolver/memory"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// pipe is one way to get a 1 KiB message from a publisher to a handler.
type pipe struct {
	name string
	// publish sends one message the way a user's code would: it returns
	// when the pipe's promise is kept (raw nats.go: at once).
	publish func(ctx context.Context, body []byte) error
	flush   func(ctx context.Context) error // after a round; nil if publish already waits
	// async, when set, is used instead of publish: each publishing
	// goroutine keeps up to asyncDepth publishes in flight and reads their
	// results oldest first, the way a user of broker.PublishAsync would.
	async   func(ctx context.Context, body []byte) <-chan error
	handled atomic.Int64
	pub     broker.Broker // the publishing broker, for pipes built on another
	window  chan struct{} // messages published and not yet handled
	close   func()

	// Totals over the measured rounds.
	msgs   int
	took   time.Duration
	cpu    time.Duration
	allocs uint64
}

// handle is every pipe's subscriber handler.
func (p *pipe) handle() {
	p.handled.Add(1)
	select {
	case <-p.window:
	default:
	}
}

var payload = make([]byte, 1024)

var quiet = slog.New(slog.DiscardHandler)

func httpPipe(b *testing.B) *pipe {
	reg := memory.NewRegistry()
	mk := func() broker.Broker {
		br := direct.NewBroker(direct.WithRegistry(reg), direct.WithAddress("127.0.0.1:0"), direct.WithLogger(quiet))
		if err := br.Connect(context.Background()); err != nil {
			b.Fatal(err)
		}
		return br
	}
	pub, sub := mk(), mk()
	p := &pipe{name: "http"}
	if _, err := sub.Subscribe("bench", func(context.Context, broker.Event) error { p.handle(); return nil }); err != nil {
		b.Fatal(err)
	}
	p.publish = func(ctx context.Context, body []byte) error {
		return pub.Publish(ctx, "bench", &broker.Message{Header: map[string]string{"content-type": "application/protobuf"}, Body: body})
	}
	p.close = func() {
		pub.Disconnect(context.Background())
		sub.Disconnect(context.Background())
	}
	return p
}

// naivePipe is what a straightforward HTTP broker does: one net/http POST
// per message and subscriber, keep-alive on, 2xx once handled.
func naivePipe(b *testing.B) *pipe {
	p := &pipe{name: "naive-http"}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.ReadAll(r.Body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		p.handle()
		w.WriteHeader(http.StatusNoContent)
	})}
	go srv.Serve(lis)
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	url := "http://" + lis.Addr().String() + "/bench"
	p.publish = func(ctx context.Context, body []byte) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytesReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/protobuf")
		rsp, err := client.Do(req)
		if err != nil {
			return err
		}
		io.Copy(io.Discard, rsp.Body)
		rsp.Body.Close()
		if rsp.StatusCode/100 != 2 {
			return fmt.Errorf("naive POST: %s", rsp.Status)
		}
		return nil
	}
	p.close = func() {
		srv.Close()
		tr.CloseIdleConnections()
	}
	return p
}

type bytesReaderT struct {
	b []byte
	i int
}

func (r *bytesReaderT) Read(p []byte) (int, error) {
	if r.i >= len(r.b) {
		return 0, io.EOF
	}
	n := copy(p, r.b[r.i:])
	r.i += n
	return n, nil
}

func bytesReader(b []byte) io.Reader { return &bytesReaderT{b: b} }

func natsPipe(b *testing.B, srv *server.Server, topic string) *pipe {
	pub := natsbroker.NewBroker(natsbroker.WithURLs(srv.ClientURL()), natsbroker.WithLogger(quiet))
	sub := natsbroker.NewBroker(natsbroker.WithURLs(srv.ClientURL()), natsbroker.WithLogger(quiet))
	for _, br := range []broker.Broker{pub, sub} {
		if err := br.Connect(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
	p := &pipe{name: "nats", pub: pub}
	if _, err := sub.Subscribe(topic, func(context.Context, broker.Event) error { p.handle(); return nil }); err != nil {
		b.Fatal(err)
	}
	p.publish = func(ctx context.Context, body []byte) error {
		return pub.Publish(ctx, topic, &broker.Message{Header: map[string]string{"content-type": "application/protobuf"}, Body: body})
	}
	p.close = func() {
		pub.Disconnect(context.Background())
		sub.Disconnect(context.Background())
	}
	return p
}

// natsAsyncPipe is our nats broker through broker.PublishAsync: the same
// promise per message (a nil result: the server has it), without the
// publisher waiting for each before the next.
func natsAsyncPipe(b *testing.B, srv *server.Server) *pipe {
	p := natsPipe(b, srv, "bench.nats-async")
	p.name = "nats-async"
	pub := p.pub
	p.async = func(ctx context.Context, body []byte) <-chan error {
		return broker.PublishAsync(ctx, pub, "bench.nats-async", &broker.Message{Header: map[string]string{"content-type": "application/protobuf"}, Body: body})
	}
	return p
}

// asyncDepth is how many publishes one goroutine of an async pipe keeps
// in flight: 16 goroutines then have up to 256, the window raw nats.go
// gets.
const asyncDepth = 16

// jetstreamPipe is the jetstream broker: a nil Publish means the stream
// stored the message.
func jetstreamPipe(b *testing.B, srv *server.Server) *pipe {
	mk := func() broker.Broker {
		br := jsbroker.NewBroker(jsbroker.WithURLs(srv.ClientURL()), jsbroker.WithLogger(quiet))
		if err := br.Connect(context.Background()); err != nil {
			b.Fatal(err)
		}
		return br
	}
	pub, sub := mk(), mk()
	p := &pipe{name: "jetstream"}
	if _, err := sub.Subscribe("bench.js", func(context.Context, broker.Event) error { p.handle(); return nil }, broker.Ephemeral()); err != nil {
		b.Fatal(err)
	}
	p.publish = func(ctx context.Context, body []byte) error {
		return pub.Publish(ctx, "bench.js", &broker.Message{Header: map[string]string{"content-type": "application/protobuf"}, Body: body})
	}
	p.close = func() {
		pub.Disconnect(context.Background())
		sub.Disconnect(context.Background())
	}
	return p
}

// rawPipe is nats.go alone, fire and forget: publish without waiting,
// flush once per round.
func rawPipe(b *testing.B, srv *server.Server) *pipe {
	pub, err := natsgo.Connect(srv.ClientURL())
	if err != nil {
		b.Fatal(err)
	}
	subc, err := natsgo.Connect(srv.ClientURL())
	if err != nil {
		b.Fatal(err)
	}
	p := &pipe{name: "raw-nats.go"}
	if _, err := subc.Subscribe("bench.raw", func(*natsgo.Msg) { p.handle() }); err != nil {
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

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func mallocs() uint64 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.Mallocs
}

// round publishes n messages from publishers goroutines, at most window
// of them published and not yet handled, and waits until all are handled.
func (p *pipe) round(b *testing.B, n, publishers int, measure bool) {
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
	for g := range publishers {
		share := n / publishers
		if g < n%publishers {
			share++
		}
		wg.Go(func() {
			var pending []<-chan error
			wait := func() bool {
				err := <-pending[0]
				pending = pending[1:]
				if err != nil {
					failed.Store(err)
				}
				return err == nil
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
				if p.async == nil {
					if err := p.publish(ctx, payload); err != nil {
						failed.Store(err)
						return
					}
					continue
				}
				if len(pending) == asyncDepth && !wait() {
					return
				}
				pending = append(pending, p.async(ctx, payload))
			}
		})
	}
	wg.Wait()
	if err, _ := failed.Load().(error); err != nil {
		b.Fatalf("%s: %v", p.name, err)
	}
	if p.flush != nil {
		if err := p.flush(ctx); err != nil {
			b.Fatal(err)
		}
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

func (p *pipe) rate() float64 { return float64(p.msgs) / p.took.Seconds() }

// BenchmarkPublishHandled measures publish->handled throughput of 1 KiB
// messages, publisher and subscriber in one process over loopback, with 1
// and 16 publishing goroutines (at most 64 and 256 messages in flight):
// raw nats.go fire and forget, our nats broker (a nil Publish: the server
// has it), the same through broker.PublishAsync (each goroutine keeping up
// to asyncDepth in flight: the same promise per message), our http broker (a nil Publish: the handler ran), and a naive
// HTTP broker (one net/http POST per message, keep-alive). Pipes run in
// interleaved rounds of one run; it reports each pipe's msgs/s, CPU
// microseconds and allocations per message (the whole process: publisher
// and subscriber together), and the ratios nats/raw, nats-async/raw and
// http/naive. The
// jetstream broker (a nil Publish: stored in a file-backed stream) runs
// alongside, on a server of its own.
func BenchmarkPublishHandled(b *testing.B) {
	srv, err := natstest.Start()
	if err != nil {
		b.Fatal(err)
	}
	defer natstest.Stop(srv)
	jsSrv, err := natstest.StartJetStream(b.TempDir(), -1)
	if err != nil {
		b.Fatal(err)
	}
	defer natstest.Stop(jsSrv)
	for _, tc := range []struct{ publishers, window int }{{1, 64}, {16, 256}} {
		b.Run(fmt.Sprintf("publishers=%d", tc.publishers), func(b *testing.B) {
			pipes := []*pipe{rawPipe(b, srv), natsPipe(b, srv, "bench.nats"), natsAsyncPipe(b, srv), httpPipe(b), naivePipe(b), jetstreamPipe(b, jsSrv)}
			defer func() {
				for _, p := range pipes {
					p.close()
				}
			}()
			for _, p := range pipes {
				p.window = make(chan struct{}, tc.window)
				p.round(b, 200, tc.publishers, false) // warm: discovery, connections
			}
			const n = 4000
			for b.Loop() {
				for _, p := range pipes {
					p.round(b, n, tc.publishers, true)
				}
			}
			by := map[string]*pipe{}
			for _, p := range pipes {
				by[p.name] = p
				b.ReportMetric(p.rate(), p.name+"-msgs/s")
				b.ReportMetric(float64(p.cpu.Microseconds())/float64(p.msgs), p.name+"-cpu-µs/msg")
				b.ReportMetric(float64(p.allocs)/float64(p.msgs), p.name+"-allocs/msg")
			}
			ratio := func(a, b string) float64 { return by[a].rate() / by[b].rate() }
			b.ReportMetric(ratio("nats", "raw-nats.go"), "nats/raw")
			b.ReportMetric(ratio("nats-async", "raw-nats.go"), "nats-async/raw")
			b.ReportMetric(ratio("http", "naive-http"), "http/naive")
			b.ReportMetric(ratio("jetstream", "raw-nats.go"), "jetstream/raw")
			names := slices.Collect(func(yield func(string) bool) {
				for _, p := range pipes {
					if !yield(fmt.Sprintf("%s %.0f/s %.1fµs %.0fallocs", p.name, p.rate(), float64(p.cpu.Microseconds())/float64(p.msgs), float64(p.allocs)/float64(p.msgs))) {
						return
					}
				}
			})
			fmt.Fprintf(os.Stderr, "publishers=%d: %v; nats/raw %.3f, nats-async/raw %.3f, http/naive %.3f\n", tc.publishers, names, ratio("nats", "raw-nats.go"), ratio("nats-async", "raw-nats.go"), ratio("http", "naive-http"))
		})
	}
}
