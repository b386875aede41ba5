package throttle

import (
	"context"
	"math"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

func TestProbability(t *testing.T) {
	for _, tt := range []struct {
		requests, accepts int64
		k, want           float64
	}{
		{0, 0, 2, 0},
		{100, 100, 2, 0},
		{100, 50, 2, 0}, // half refused: K=2 still sends all
		{100, 25, 2, 50.0 / 101},
		{100, 0, 2, 100.0 / 101},
		{100, 50, 1, 50.0 / 101},
	} {
		if got := probability(tt.requests, tt.accepts, tt.k); math.Abs(got-tt.want) > 1e-9 {
			t.Errorf("probability(%d, %d, K=%v) = %v, want %v", tt.requests, tt.accepts, tt.k, got, tt.want)
		}
	}
}

type fakeClock struct{ ns atomic.Int64 }

func (c *fakeClock) now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) advance(d time.Duration) { c.ns.Add(int64(d)) }

// backend is an invoker answering with code (OK when codes.OK), counting
// the calls it got.
type backend struct {
	code  atomic.Uint32
	calls atomic.Int64
}

func (b *backend) invoke(ctx context.Context, _ string, _, _ any, _ *grpc.ClientConn, _ ...grpc.CallOption) error {
	b.calls.Add(1)
	if c := codes.Code(b.code.Load()); c != codes.OK {
		return status.Error(c, "backend says no")
	}
	return nil
}

// newTest returns a Throttle on a fake clock and a backend answering code.
func newTest(code codes.Code) (*Throttle, *fakeClock, *backend) {
	clock := &fakeClock{}
	clock.advance(time.Hour)
	b := &backend{}
	b.code.Store(uint32(code))
	return New(WithClock(clock.now)), clock, b
}

// run makes n calls a millisecond apart and returns how many were refused
// locally.
func run(t *testing.T, th *Throttle, clock *fakeClock, b *backend, n int) (local int) {
	t.Helper()
	call := th.UnaryClientInterceptor()
	for range n {
		err := call(context.Background(), "/svc/M", nil, nil, nil, b.invoke)
		if err != nil && strings.HasPrefix(status.Convert(err).Message(), RefusedMessage) {
			local++
		}
		clock.advance(time.Millisecond)
	}
	return local
}

// A backend that refuses everything gets ever fewer calls: the client
// refuses them itself at about the formula's rate.
func TestThrottlesAFailingBackend(t *testing.T) {
	th, clock, b := newTest(codes.Unavailable)
	local := run(t, th, clock, b, 2000)
	if local < 1500 {
		t.Fatalf("refused %d of 2000 calls locally, backend got %d: want most refused", local, b.calls.Load())
	}
	if p := th.Probability(); p < 0.9 {
		t.Fatalf("probability %.2f after a backend refused everything, want > 0.9", p)
	}
}

// The kratos trap: after the backend recovers, throttling ends within a
// window, although it refused many calls locally meanwhile (local
// refusals are not counted as failures).
func TestThrottlingEndsAfterRecovery(t *testing.T) {
	th, clock, b := newTest(codes.Unavailable)
	if local := run(t, th, clock, b, 3000); local < 2000 {
		t.Fatalf("refused only %d of 3000 locally while the backend was down", local)
	}
	b.code.Store(uint32(codes.OK))
	// Calls a millisecond apart for one window: by its end none refused.
	run(t, th, clock, b, int(DefaultWindow/time.Millisecond))
	if local := run(t, th, clock, b, 1000); local != 0 {
		t.Fatalf("refused %d of 1000 calls locally a window after the backend recovered (probability %.2f)", local, th.Probability())
	}
}

// Application errors are answers; cancellations and callers' own
// deadlines are not counted at all.
func TestWhatCounts(t *testing.T) {
	th, clock, b := newTest(codes.NotFound)
	if local := run(t, th, clock, b, 1000); local != 0 || th.Probability() != 0 {
		t.Fatalf("NotFound answers throttled: %d local refusals, probability %.2f", local, th.Probability())
	}
	th = New(WithClock(clock.now))
	b.code.Store(uint32(codes.Canceled))
	run(t, th, clock, b, 1000)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	call := th.UnaryClientInterceptor()
	b.code.Store(uint32(codes.DeadlineExceeded))
	for range 1000 {
		call(ctx, "/svc/M", nil, nil, nil, b.invoke) // the caller gave up
	}
	th.mu.Lock()
	r, _ := th.totals(clock.now().UnixNano() / int64(th.bucket))
	th.mu.Unlock()
	if r != 0 {
		t.Fatalf("%d requests counted from cancelled calls, want 0", r)
	}
}

// Through a real server: a service answering UNAVAILABLE is throttled,
// and once it serves again calls go through (real clock, short window).
func TestThrottleRealServer(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := health.NewServer()
	var down atomic.Bool
	down.Store(true)
	srv := grpc.NewServer(grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		if down.Load() {
			return nil, status.Error(codes.Unavailable, "down")
		}
		return h(ctx, req)
	}))
	healthpb.RegisterHealthServer(srv, hs)
	go srv.Serve(lis)
	defer srv.Stop()
	cc, err := grpc.NewClient(lis.Addr().String(), append(DialOptions(WithWindow(500*time.Millisecond)),
		grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	client := healthpb.NewHealthClient(cc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	local := 0
	for range 300 {
		_, err := client.Check(ctx, &healthpb.HealthCheckRequest{})
		if strings.HasPrefix(status.Convert(err).Message(), RefusedMessage) {
			local++
		}
	}
	if local < 150 {
		t.Fatalf("refused %d of 300 calls locally to a service answering UNAVAILABLE", local)
	}
	down.Store(false)
	time.Sleep(600 * time.Millisecond) // a window
	for i := range 100 {
		if _, err := client.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
			t.Fatalf("call %d after recovery: %v", i, err)
		}
	}
}
