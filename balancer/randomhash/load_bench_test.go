package randomhash_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/microgrpc/microgrpc/balancer/randomhash"
	pb "github.com/microgrpc/microgrpc/proto/greeter"
)

// BenchmarkSlowNodes compares least-loaded and uniform random picks with
// three in-process nodes, one of them misbehaving, and callers calling in
// a loop for a fixed time (each b.N round is one such run):
//
//   - frozen: after a healthy second, one node's calls never return until
//     their 2 s deadline (a SIGSTOPped process, as far as its clients can
//     tell);
//   - slow: after a healthy second, one node takes 10x as long per call
//     (1 ms against 100 µs).
//
// Reported for the 3 s after the change: calls/s of the whole client,
// failed calls, p50 and p99 latency, and worst-window/before, the calls
// of the worst quarter second against a quarter of the healthy second.
//
// go test -run '^$' -bench SlowNodes -benchtime 1x ./balancer/randomhash
//
// In one process, so that it shows the picks' effect, not the node's
// CPU: bench's separate-process benchmarks measure the RPC path.
func BenchmarkSlowNodes(b *testing.B) {
	for _, scenario := range []string{"frozen", "slow"} {
		for _, mode := range []string{randomhash.PickLeastLoaded, randomhash.PickRandom} {
			b.Run(scenario+"/"+mode, func(b *testing.B) {
				for b.Loop() {
					runSlowNode(b, scenario, mode)
				}
			})
		}
	}
}

func runSlowNode(b *testing.B, scenario, mode string) {
	f := newFleet(b)
	var bad atomic.Bool // n0 misbehaves
	for _, id := range ids(3) {
		be := f.add(id, "", nil)
		be.fail = func(ctx context.Context) error {
			delay := 100 * time.Microsecond
			if id == "n0" && bad.Load() {
				switch scenario {
				case "frozen":
					delay = time.Hour // until the call's deadline
				case "slow":
					delay = time.Millisecond
				}
			}
			select {
			case <-time.After(delay):
				return nil
			case <-ctx.Done():
				return status.FromContextError(ctx.Err()).Err()
			}
		}
	}
	c := f.client(randomhash.WithPick(mode))
	waitAll(b, c, ids(3)...)
	const callers = 16
	const healthy, run = time.Second, 3 * time.Second
	// Successful calls by the quarter second they ended in, from start.
	const window = 250 * time.Millisecond
	var done [(healthy + run) / window]atomic.Int64
	start := time.Now()
	time.AfterFunc(healthy, func() { bad.Store(true) })
	var mu sync.Mutex
	var lat []time.Duration
	failed := 0
	var wg sync.WaitGroup
	end := start.Add(healthy + run)
	for range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start0 := start
			var mine []time.Duration
			bad := 0
			for time.Now().Before(end) {
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				start := time.Now()
				_, err := c.Hello(ctx, &pb.Request{})
				cancel()
				if err != nil {
					if errors.Is(err, context.Canceled) || status.Code(err) == codes.Canceled {
						continue
					}
					bad++
					continue
				}
				took := time.Since(start)
				if w := time.Since(start0) / window; int(w) < len(done) {
					done[w].Add(1)
				}
				if start.After(start0.Add(healthy)) {
					mine = append(mine, took)
				}
			}
			mu.Lock()
			lat = append(lat, mine...)
			failed += bad
			mu.Unlock()
		}()
	}
	wg.Wait()
	slices.Sort(lat)
	if len(lat) == 0 {
		b.Fatal("no call succeeded")
	}
	// The worst quarter second with n0 misbehaving against the healthy
	// second before (the first quarter skipped: it still waits for the
	// freeze to show).
	var before int64
	for i := range healthy / window {
		before += done[i].Load()
	}
	worst := int64(-1)
	for i := healthy/window + 1; i < time.Duration(len(done)); i++ {
		if n := done[i].Load(); worst < 0 || n < worst {
			worst = n
		}
	}
	b.ReportMetric(float64(worst)/(float64(before)/float64(healthy/window)), "worst-window/before")
	b.ReportMetric(float64(len(lat))/run.Seconds(), "calls/s")
	b.ReportMetric(float64(failed), "failed")
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}
