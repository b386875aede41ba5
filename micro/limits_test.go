package micro_test

import (
	"context"
	"runtime"
	"runtime/metrics"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/microgrpc/microgrpc/micro"
	pb "github.com/microgrpc/microgrpc/proto/greeter"
	"github.com/microgrpc/microgrpc/resolver/memory"
)

// With the default limits, a 5 MiB request gets ResourceExhausted and the
// next normal call on the same connection succeeds.
func TestDefaultMaxRequestSize(t *testing.T) {
	srv := startService(t, memory.NewRegistry(), "greeter")
	client := pb.NewGreeterClient(plainConn(t, srv.svc.Address()))
	_, err := client.Hello(testCtx(t), &pb.Request{Name: strings.Repeat("x", 5<<20)})
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("5 MiB request = %v, want ResourceExhausted", err)
	}
	if _, err := client.Hello(testCtx(t), &pb.Request{Name: "small"}); err != nil {
		t.Fatalf("the next call: %v", err)
	}
}

// A client that opens more streams than a connection may hold waits on
// its own connection; another client's calls go through at once.
func TestStreamFloodDoesNotStopOthers(t *testing.T) {
	srv := startService(t, memory.NewRegistry(), "greeter")
	flood := pb.NewGreeterClient(plainConn(t, srv.svc.Address()))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	opened := make(chan error, micro.DefaultMaxConcurrentStreams+100)
	for range micro.DefaultMaxConcurrentStreams + 100 {
		go func() {
			s, err := flood.Chat(ctx)
			if err == nil {
				err = s.Send(&pb.Request{Name: "hold"})
			}
			opened <- err
		}()
	}
	// Wait until the connection is full.
	for range micro.DefaultMaxConcurrentStreams {
		if err := <-opened; err != nil {
			t.Fatal(err)
		}
	}
	other := pb.NewGreeterClient(plainConn(t, srv.svc.Address()))
	start := time.Now()
	cctx, ccancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer ccancel()
	if _, err := other.Hello(cctx, &pb.Request{Name: "me"}, grpc.WaitForReady(true)); err != nil {
		t.Fatalf("another client's call during the flood: %v", err)
	}
	t.Logf("a call from another connection took %v with %d streams held", time.Since(start), micro.DefaultMaxConcurrentStreams)
	cancel() // the flood ends
}

// preEncoded sends requests that are already protobuf bytes, so that 48
// concurrent calls of 4 MiB share one buffer on the client side and what
// grows is the server's memory. It decodes replies as protobuf.
type preEncoded struct{}

func (preEncoded) Name() string { return "proto" }

func (preEncoded) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(v.([]byte))}, nil
}

func (preEncoded) Unmarshal(data mem.BufferSlice, v any) error {
	return proto.Unmarshal(data.Materialize(), v.(proto.Message))
}

// floodLarge makes n concurrent calls of a request just under 4 MiB to a
// service whose handler holds each for hold, and returns how many requests
// the handlers held at once and the peak growth of the heap.
func floodLarge(t *testing.T, n int, hold time.Duration, opts ...micro.Option) (maxHeld int, peakMiB int64) {
	var mu sync.Mutex
	held, most := 0, 0 // guarded by mu: handlers may still run after a call gave up
	srv := startServiceHook(t, memory.NewRegistry(), "greeter", func(ctx context.Context, req *pb.Request) error {
		if len(req.GetName()) < 1<<20 {
			return nil // the small call
		}
		mu.Lock()
		held++
		most = max(most, held)
		mu.Unlock()
		time.Sleep(hold)
		mu.Lock()
		held--
		mu.Unlock()
		return nil
	}, opts...)
	// Several connections, so that the client's sending is not what
	// spaces the requests out.
	var conns []*grpc.ClientConn
	for range 8 {
		conns = append(conns, plainConn(t, srv.svc.Address()))
	}
	cc := conns[0]
	body, err := proto.Marshal(&pb.Request{Name: strings.Repeat("x", micro.DefaultMaxRecvMsgSize-64)})
	if err != nil {
		t.Fatal(err)
	}
	runtime.GC()
	// The live heap as of each GC: what was held, not garbage waiting.
	sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(sample)
	base := int64(sample[0].Value.Uint64())
	stop := make(chan struct{})
	sampled := make(chan int64)
	go func() {
		peak := base
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				sampled <- peak
				return
			case <-tick.C:
				metrics.Read(sample)
				peak = max(peak, int64(sample[0].Value.Uint64()))
			}
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	errs := make(chan error, n)
	for i := range n {
		go func() {
			var reply pb.Response
			errs <- conns[i%len(conns)].Invoke(ctx, "/greeter.Greeter/Hello", body, &reply, grpc.ForceCodecV2(preEncoded{}))
		}()
	}
	// A small call in the middle of the flood is served (it may wait its
	// turn, not fail).
	time.Sleep(hold / 2)
	if _, err := pb.NewGreeterClient(cc).Hello(ctx, &pb.Request{Name: "small"}); err != nil {
		t.Errorf("a small call during the flood: %v", err)
	}
	for range n {
		if err := <-errs; err != nil {
			t.Errorf("a large call: %v", err)
		}
	}
	close(stop)
	mu.Lock()
	maxHeld = most
	mu.Unlock()
	return maxHeld, (<-sampled - base) >> 20
}

// WithMaxRequestMemory bounds the requests the server holds at once: 32
// concurrent 4 MiB requests to a node with a 16 MiB budget are received at
// most 4 at a time (all of them served, and a small call among them),
// where without the bound far more are held together; a node with the
// default budget (32 MiB) holds at most 8.
func TestRequestMemoryBounded(t *testing.T) {
	const n, budget = 32, 16 << 20
	held, peak := floodLarge(t, n, 400*time.Millisecond, micro.WithMaxRequestMemory(budget))
	freeHeld, freePeak := floodLarge(t, n, 400*time.Millisecond, micro.WithMaxRequestMemory(0))
	t.Logf("budget %d MiB: %d requests held at once, live heap peak +%d MiB; no budget: %d at once, +%d MiB",
		budget>>20, held, peak, freeHeld, freePeak)
	if limit := budget / micro.DefaultMaxRecvMsgSize; held > limit {
		t.Errorf("with a %d MiB budget the handlers held %d requests of 4 MiB at once, want at most %d", budget>>20, held, limit)
	}
	if freeHeld <= budget/micro.DefaultMaxRecvMsgSize {
		t.Errorf("without a budget only %d requests were held at once: the flood does not test the bound", freeHeld)
	}
	// And by default: DefaultMaxRequestMemory.
	defHeld, defPeak := floodLarge(t, n, 400*time.Millisecond)
	t.Logf("default budget %d MiB: %d requests held at once, live heap peak +%d MiB", micro.DefaultMaxRequestMemory>>20, defHeld, defPeak)
	if limit := micro.DefaultMaxRequestMemory / micro.DefaultMaxRecvMsgSize; defHeld > limit {
		t.Errorf("by default the handlers held %d requests of 4 MiB at once, want at most %d", defHeld, limit)
	}
	// The heap peaks are reported, not checked: with the race detector on
	// (as the suite runs) GC timing makes them vary run to run. Without it
	// they were +72 MiB with the budget and +209 MiB without.
}
