package pubsub_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"

	"github.com/microgrpc/microgrpc/internal/natstest"
	"github.com/microgrpc/microgrpc/micro"
	"github.com/microgrpc/microgrpc/micro/pubsub"
	_ "github.com/microgrpc/microgrpc/plugins/nats" // --broker=nats
	pb "github.com/microgrpc/microgrpc/proto/greeter"
	"github.com/microgrpc/microgrpc/resolver/memory"
)

// userPipe is one way a user's code gets a 1 KiB proto message from a
// publisher to a typed handler.
type userPipe struct {
	name string
	// send publishes one message; with async set, it returns the result's
	// channel instead of waiting (PublishAsync).
	send    func(ctx context.Context, ev *pb.Event) <-chan error
	flush   func(ctx context.Context) error
	async   bool
	handled atomic.Int64
	window  chan struct{}
	close   func()

	msgs   int
	took   time.Duration
	cpu    time.Duration
	allocs uint64
}

func (p *userPipe) handle() {
	p.handled.Add(1)
	select {
	case <-p.window:
	default:
	}
}

var event = &pb.Event{Id: "1", Message: string(make([]byte, 1024))}

var discard = micro.WithLogger(slog.New(slog.DiscardHandler))

// servicePipe is a subscriber service with a typed handler and a publisher
// service, over the broker options given (a shared registry in memory).
func servicePipe(b *testing.B, name string, async bool, opts ...micro.Option) *userPipe {
	reg := memory.NewRegistry()
	p := &userPipe{name: name, async: async}
	ctx, stop := context.WithCancel(context.Background())
	started := make(chan struct{})
	sub := micro.NewService(append([]micro.Option{micro.WithName("bench-sub"), micro.WithAddress("127.0.0.1:0"), micro.WithRegistry(reg),
		micro.WithContext(ctx), micro.WithSignal(false), micro.WithDeregisterWait(0), discard,
		micro.WithAfterStart(func(context.Context) error { close(started); return nil })}, opts...)...)
	if err := pubsub.RegisterSubscriber("bench.user", sub, func(_ context.Context, ev *pb.Event) error {
		p.handle()
		return nil
	}); err != nil {
		b.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- sub.Run() }()
	<-started
	pubSvc := micro.NewService(append([]micro.Option{micro.WithName("bench-pub"), micro.WithRegistry(reg), discard}, opts...)...)
	publisher := pubsub.NewPublisher("bench.user", pubSvc)
	p.send = func(ctx context.Context, ev *pb.Event) <-chan error {
		if async {
			return publisher.PublishAsync(ctx, ev)
		}
		ack := make(chan error, 1)
		ack <- publisher.Publish(ctx, ev)
		return ack
	}
	p.close = func() {
		pubSvc.Close()
		stop()
		<-done
	}
	return p
}

// rawNATSPipe is nats.go alone: the handler unmarshals the proto message,
// the publisher marshals it and does not wait (flushed once per round).
func rawNATSPipe(b *testing.B, url string) *userPipe {
	pub, err := natsgo.Connect(url)
	if err != nil {
		b.Fatal(err)
	}
	subc, err := natsgo.Connect(url)
	if err != nil {
		b.Fatal(err)
	}
	p := &userPipe{name: "raw-nats.go"}
	if _, err := subc.Subscribe("bench.raw", func(m *natsgo.Msg) {
		var ev pb.Event
		if proto.Unmarshal(m.Data, &ev) == nil {
			p.handle()
		}
	}); err != nil {
		b.Fatal(err)
	}
	subc.Flush()
	p.send = func(_ context.Context, ev *pb.Event) <-chan error {
		ack := make(chan error, 1)
		data, err := proto.Marshal(ev)
		if err == nil {
			err = pub.PublishMsg(&natsgo.Msg{Subject: "bench.raw", Header: natsgo.Header{"content-type": {"application/protobuf"}}, Data: data})
		}
		ack <- err
		return ack
	}
	p.flush = func(ctx context.Context) error { return pub.FlushWithContext(ctx) }
	p.close = func() { pub.Close(); subc.Close() }
	return p
}

func cpuNow() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func mallocCount() uint64 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.Mallocs
}

// asyncDepth is how many publishes one goroutine keeps in flight with
// PublishAsync.
const asyncDepth = 16

// round publishes n messages from publishers goroutines, at most
// cap(p.window) published and not yet handled, and waits until all are
// handled.
func (p *userPipe) round(b *testing.B, n, publishers int, measure bool) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	want := p.handled.Load() + int64(n)
	cpu0, m0 := cpuNow(), mallocCount()
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
			depth := 1
			if p.async {
				depth = asyncDepth
			}
			for range share {
				select {
				case p.window <- struct{}{}:
				case <-ctx.Done():
					return
				}
				if len(pending) == depth && !wait() {
					return
				}
				pending = append(pending, p.send(ctx, event))
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
		p.cpu += cpuNow() - cpu0
		p.allocs += mallocCount() - m0
		p.msgs += n
	}
}

func (p *userPipe) rate() float64 { return float64(p.msgs) / p.took.Seconds() }

// BenchmarkUserPath measures the path a user writes: a publisher service
// calling pubsub.NewPublisher(...).Publish or PublishAsync with a proto
// message carrying 1 KiB, and a subscriber service with RegisterSubscriber
// and a typed handler, at 1 and 16 publishing goroutines with at most 64
// and 256 messages published and not yet handled; against raw nats.go
// (marshal, publish, unmarshal in the handler) in the same run. Both
// services and the NATS server share this process. It reports msgs/s,
// CPU microseconds and allocations per message (the whole process) for
// each, and the ratios to raw nats.go.
func BenchmarkUserPath(b *testing.B) {
	srv, err := natstest.Start()
	if err != nil {
		b.Fatal(err)
	}
	defer natstest.Stop(srv)
	natsOpt := micro.WithBrokerPlugin("nats", srv.ClientURL())
	for _, tc := range []struct{ publishers, window int }{{1, 64}, {16, 256}} {
		b.Run(fmt.Sprintf("publishers=%d", tc.publishers), func(b *testing.B) {
			pipes := []*userPipe{
				rawNATSPipe(b, srv.ClientURL()),
				servicePipe(b, "nats", false, natsOpt),
				servicePipe(b, "nats-async", true, natsOpt),
				servicePipe(b, "http", false),
				servicePipe(b, "http-async", true),
			}
			defer func() {
				for _, p := range pipes {
					p.close()
				}
			}()
			for _, p := range pipes {
				p.window = make(chan struct{}, tc.window)
				p.round(b, 200, tc.publishers, false)
			}
			for b.Loop() {
				for _, p := range pipes {
					p.round(b, 4000, tc.publishers, true)
				}
			}
			raw := pipes[0]
			for _, p := range pipes {
				cpu := float64(p.cpu.Microseconds()) / float64(p.msgs)
				b.ReportMetric(p.rate(), p.name+"-msgs/s")
				b.ReportMetric(cpu, p.name+"-cpu-µs/msg")
				b.ReportMetric(float64(p.allocs)/float64(p.msgs), p.name+"-allocs/msg")
				if p != raw {
					b.ReportMetric(p.rate()/raw.rate(), p.name+"/raw")
				}
				fmt.Fprintf(os.Stderr, "publishers=%d %-12s %8.0f msg/s %6.1f µs/msg %5.1f allocs/msg  %.2fx raw msgs/s, %.2fx raw CPU\n",
					tc.publishers, p.name, p.rate(), cpu, float64(p.allocs)/float64(p.msgs), p.rate()/raw.rate(),
					cpu/(float64(raw.cpu.Microseconds())/float64(raw.msgs)))
			}
		})
	}
}
