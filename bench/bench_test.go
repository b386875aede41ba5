package bench

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/microgrpc/microgrpc/internal/greetertest"
	"github.com/microgrpc/microgrpc/micro"
	pb "github.com/microgrpc/microgrpc/proto/greeter"
	"github.com/microgrpc/microgrpc/resolver/memory"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fixture is one greeter service and two clients of it: one through
// micro's Dial (registry, balancer, retry policy, default interceptors) and
// one raw grpc-go client dialing the address.
type fixture struct {
	micro, raw pb.GreeterClient
}

func setup(b *testing.B) *fixture {
	b.Helper()
	reg := memory.NewRegistry()
	ctx, cancel := context.WithCancel(context.Background())
	quiet := slog.New(slog.DiscardHandler)
	started := make(chan struct{})
	svc := micro.NewService(micro.WithName("greeter"), micro.WithAddress("127.0.0.1:0"), micro.WithRegistry(reg),
		micro.WithContext(ctx), micro.WithSignal(false), micro.WithDeregisterWait(0), micro.WithLogger(quiet),
		micro.WithAfterStart(func(context.Context) error { close(started); return nil }))
	pb.RegisterGreeterServer(svc.Server(), &greetertest.Server{Node: "bench"})
	done := make(chan error, 1)
	go func() { done <- svc.Run() }()
	select {
	case <-started:
	case err := <-done:
		b.Fatalf("Run: %v", err)
	}
	client := micro.NewService(micro.WithName("bench-client"), micro.WithRegistry(reg), micro.WithLogger(quiet))
	raw, err := grpc.NewClient("passthrough:///"+svc.Address(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		raw.Close()
		client.Close()
		cancel()
		<-done
	})
	f := &fixture{micro: pb.NewGreeterClient(client.Dial("greeter")), raw: pb.NewGreeterClient(raw)}
	// Warm both up so connection setup is not measured.
	wctx, wcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer wcancel()
	for _, c := range []pb.GreeterClient{f.micro, f.raw} {
		if _, err := c.Hello(wctx, &pb.Request{Name: "warm"}, grpc.WaitForReady(true)); err != nil {
			b.Fatal(err)
		}
	}
	return f
}

func hello(b *testing.B, c pb.GreeterClient, req *pb.Request) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Hello(ctx, req); err != nil {
		b.Error(err)
	}
}

// run makes b.N calls with the given number of concurrent callers.
func run(b *testing.B, c pb.GreeterClient, conc int) {
	req := &pb.Request{Name: "John"}
	b.ReportAllocs()
	b.SetParallelism(max(1, conc/max(1, testingProcs())))
	b.ResetTimer()
	if conc == 1 {
		for b.Loop() {
			hello(b, c, req)
		}
	} else {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				hello(b, c, req)
			}
		})
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "calls/s")
}

// BenchmarkHello measures calls/s and allocations per call for both
// clients at concurrency 1 and 64.
func BenchmarkHello(b *testing.B) {
	f := setup(b)
	for _, conc := range []int{1, 64} {
		b.Run(fmt.Sprintf("micro/c%d", conc), func(b *testing.B) { run(b, f.micro, conc) })
		b.Run(fmt.Sprintf("raw/c%d", conc), func(b *testing.B) { run(b, f.raw, conc) })
	}
}

// BenchmarkHelloRatio interleaves short rounds of both clients and reports
// micro's throughput as a fraction of raw grpc-go's (1.0 = equal), which is
// steadier on a shared machine than comparing two separate benchmarks.
func BenchmarkHelloRatio(b *testing.B) {
	f := setup(b)
	for _, conc := range []int{1, 64} {
		b.Run(fmt.Sprintf("c%d", conc), func(b *testing.B) {
			var microT, rawT time.Duration
			calls := 0
			for b.Loop() {
				const round = 200
				rawT += timeCalls(b, f.raw, conc, round)
				microT += timeCalls(b, f.micro, conc, round)
				calls += round
			}
			b.ReportMetric(rawT.Seconds()/microT.Seconds(), "micro/raw")
			b.ReportMetric(float64(calls)/microT.Seconds(), "micro-calls/s")
			b.ReportMetric(float64(calls)/rawT.Seconds(), "raw-calls/s")
		})
	}
}

// timeCalls makes n calls spread over conc goroutines and returns the wall
// time they took.
func timeCalls(b *testing.B, c pb.GreeterClient, conc, n int) time.Duration {
	req := &pb.Request{Name: "John"}
	work := make(chan struct{}, n)
	for range n {
		work <- struct{}{}
	}
	close(work)
	start := time.Now()
	done := make(chan struct{})
	for range conc {
		go func() {
			defer func() { done <- struct{}{} }()
			for range work {
				hello(b, c, req)
			}
		}()
	}
	for range conc {
		<-done
	}
	return time.Since(start)
}
