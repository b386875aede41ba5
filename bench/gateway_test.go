package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/microgrpc/microgrpc/bench/internal/control"
	"github.com/microgrpc/microgrpc/internal/greetertest"
	"github.com/microgrpc/microgrpc/micro"
	"github.com/microgrpc/microgrpc/micro/gateway"
	pb "github.com/microgrpc/microgrpc/proto/greeter"
	"github.com/microgrpc/microgrpc/resolver/memory"
)

// BenchmarkGateway compares a call of Greeter.Hello as JSON over HTTP/1.1
// through the gateway (POST /api/greeter/Greeter.Hello) with the same call
// over gRPC through svc.Dial, to the same two nodes, in the same run: each
// round (one per b.N) runs each way for 300 ms, alternating. It reports the
// median calls/s of each, their ratio, CPU per call (the whole process:
// nodes, gateway and callers), and at 1 caller the median latency of each
// and what the gateway adds.
//
//	go test -run '^$' -bench Gateway -benchtime 5x ./bench
func BenchmarkGateway(b *testing.B) {
	reg := memory.NewRegistry()
	quiet := slog.New(slog.DiscardHandler)
	for i := range 2 {
		ctx, cancel := context.WithCancel(context.Background())
		started := make(chan struct{})
		svc := micro.NewService(micro.WithName("greeter"), micro.WithAddress("127.0.0.1:0"), micro.WithRegistry(reg),
			micro.WithContext(ctx), micro.WithSignal(false), micro.WithDeregisterWait(0), micro.WithLogger(quiet),
			micro.WithAfterStart(func(context.Context) error { close(started); return nil }))
		pb.RegisterGreeterServer(svc.Server(), &greetertest.Server{Node: fmt.Sprint("node", i)})
		done := make(chan error, 1)
		go func() { done <- svc.Run() }()
		select {
		case <-started:
		case err := <-done:
			b.Fatalf("Run: %v", err)
		}
		b.Cleanup(func() { cancel(); <-done })
	}
	client := micro.NewService(micro.WithName("bench-client"), micro.WithRegistry(reg), micro.WithLogger(quiet))
	b.Cleanup(func() { client.Close() })
	gw, err := gateway.New(client, gateway.WithLogger(quiet), gateway.WithDashboard(false))
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(gw)
	b.Cleanup(func() { srv.Close(); gw.Close() })
	// One kept-alive connection per caller (64 dials in all, measured).
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 128, DisableCompression: true}}
	b.Cleanup(hc.CloseIdleConnections)
	direct := pb.NewGreeterClient(client.Dial("greeter"))
	url := srv.URL + "/api/greeter/Greeter.Hello"
	body := []byte(`{"name":"John"}`)

	viaGateway := func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		rsp, err := hc.Do(req)
		if err != nil {
			return err
		}
		_, err = io.Copy(io.Discard, rsp.Body)
		rsp.Body.Close()
		if err == nil && rsp.StatusCode != http.StatusOK {
			err = fmt.Errorf("gateway: %s", rsp.Status)
		}
		return err
	}
	viaGRPC := func(ctx context.Context) error {
		_, err := direct.Hello(ctx, &pb.Request{Name: "John"})
		return err
	}

	for _, callers := range []int{1, 64} {
		b.Run(fmt.Sprintf("callers=%d", callers), func(b *testing.B) {
			var rounds []round
			for b.Loop() {
				rounds = append(rounds, round{grpc: measure(b, viaGRPC, callers), gateway: measure(b, viaGateway, callers)})
			}
			med := func(f func(round) float64) float64 {
				v := make([]float64, len(rounds))
				for i, r := range rounds {
					v[i] = f(r)
				}
				slices.Sort(v)
				return v[len(v)/2]
			}
			b.ReportMetric(0, "ns/op")
			b.ReportMetric(med(func(r round) float64 { return r.grpc.perSec }), "grpc_calls/s")
			b.ReportMetric(med(func(r round) float64 { return r.gateway.perSec }), "gateway_calls/s")
			b.ReportMetric(med(func(r round) float64 { return r.gateway.perSec / r.grpc.perSec }), "gateway/grpc")
			b.ReportMetric(med(func(r round) float64 { return r.grpc.cpuPerCall }), "grpc_cpu_us/call")
			b.ReportMetric(med(func(r round) float64 { return r.gateway.cpuPerCall }), "gateway_cpu_us/call")
			if callers == 1 {
				b.ReportMetric(med(func(r round) float64 { return r.grpc.p50 }), "grpc_p50_us")
				b.ReportMetric(med(func(r round) float64 { return r.gateway.p50 }), "gateway_p50_us")
				b.ReportMetric(med(func(r round) float64 { return r.gateway.p50 - r.grpc.p50 }), "added_p50_us")
			}
		})
	}
}

type round struct{ grpc, gateway result }

type result struct {
	perSec, cpuPerCall, p50 float64 // calls/s, µs, µs
}

// measure runs call from callers goroutines for 300 ms.
func measure(b *testing.B, call func(context.Context) error, callers int) result {
	const d = 300 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), d+10*time.Second)
	defer cancel()
	var n atomic.Int64
	var failed atomic.Value
	lat := make([][]time.Duration, callers)
	stop := time.Now().Add(d)
	cpu0, t0 := control.CPU(), time.Now()
	var wg sync.WaitGroup
	for i := range callers {
		wg.Go(func() {
			for time.Now().Before(stop) {
				s := time.Now()
				if err := call(ctx); err != nil {
					failed.Store(err)
					return
				}
				lat[i] = append(lat[i], time.Since(s))
				n.Add(1)
			}
		})
	}
	wg.Wait()
	elapsed, cpu := time.Since(t0), control.CPU()-cpu0
	if err, _ := failed.Load().(error); err != nil {
		b.Fatal(err)
	}
	all := slices.Concat(lat...)
	slices.Sort(all)
	calls := float64(n.Load())
	return result{
		perSec:     calls / elapsed.Seconds(),
		cpuPerCall: float64(cpu.Microseconds()) / calls,
		p50:        float64(all[len(all)/2].Microseconds()),
	}
}
