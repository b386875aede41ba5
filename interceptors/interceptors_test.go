package interceptors_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	grpcmd "google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/microgrpc/microgrpc/balancer/randomhash"
	"github.com/microgrpc/microgrpc/interceptors"
	"github.com/microgrpc/microgrpc/interceptors/auth"
	"github.com/microgrpc/microgrpc/interceptors/logging"
	"github.com/microgrpc/microgrpc/interceptors/metadata"
	"github.com/microgrpc/microgrpc/interceptors/metrics"
	"github.com/microgrpc/microgrpc/interceptors/nodehook"
	"github.com/microgrpc/microgrpc/interceptors/ratelimit"
	"github.com/microgrpc/microgrpc/interceptors/recovery"
	"github.com/microgrpc/microgrpc/interceptors/timeout"
	"github.com/microgrpc/microgrpc/interceptors/validate"
	"github.com/microgrpc/microgrpc/internal/greetertest"
	pb "github.com/microgrpc/microgrpc/proto/greeter"
	"github.com/microgrpc/microgrpc/resolver"
	"github.com/microgrpc/microgrpc/resolver/memory"
)

const defaultTestTimeout = 10 * time.Second

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), defaultTestTimeout)
	t.Cleanup(cancel)
	return c
}

// serve starts a greeter (with a health service) with server options and
// returns a client dialed with dial options.
func serve(t *testing.T, hook func(context.Context, *pb.Request) error, sopts []grpc.ServerOption, dopts ...grpc.DialOption) (pb.GreeterClient, *grpc.ClientConn) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer(sopts...)
	pb.RegisterGreeterServer(s, &greetertest.Server{Node: "n", Hook: hook})
	healthpb.RegisterHealthServer(s, health.NewServer())
	go s.Serve(lis)
	t.Cleanup(s.Stop)
	cc, err := grpc.NewClient("passthrough:///"+lis.Addr().String(), append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, dopts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return pb.NewGreeterClient(cc), cc
}

func TestChainOrderFirstIsOutermost(t *testing.T) {
	var mu sync.Mutex
	var trace []string
	rec := func(s string) grpc.UnaryServerInterceptor {
		return func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			mu.Lock()
			trace = append(trace, s+">")
			mu.Unlock()
			rsp, err := h(ctx, req)
			mu.Lock()
			trace = append(trace, "<"+s)
			mu.Unlock()
			return rsp, err
		}
	}
	c, _ := serve(t, nil, []grpc.ServerOption{grpc.ChainUnaryInterceptor(rec("a"), rec("b"))})
	if _, err := c.Hello(ctx(t), &pb.Request{}); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(trace, " "); got != "a> b> <b <a" {
		t.Fatalf("order %s", got)
	}
	// The subscriber chain has the same order.
	trace = nil
	sub := func(s string) interceptors.SubscriberInterceptor {
		return func(next interceptors.SubscriberHandler) interceptors.SubscriberHandler {
			return func(ctx context.Context, topic string, msg any) error {
				trace = append(trace, s)
				return next(ctx, topic, msg)
			}
		}
	}
	h := interceptors.ChainSubscriber(sub("a"), sub("b"))(func(context.Context, string, any) error { trace = append(trace, "handler"); return nil })
	h(context.Background(), "t", nil)
	if got := strings.Join(trace, " "); got != "a b handler" {
		t.Fatalf("subscriber order %s", got)
	}
}

func TestRecoveryKeepsServing(t *testing.T) {
	var logs bytes.Buffer
	l := slog.New(slog.NewTextHandler(&logs, nil))
	c, _ := serve(t, func(_ context.Context, r *pb.Request) error {
		if r.GetName() == "panic" {
			panic("boom")
		}
		return nil
	}, []grpc.ServerOption{grpc.UnaryInterceptor(recovery.UnaryServerInterceptor(l))})
	if _, err := c.Hello(ctx(t), &pb.Request{Name: "panic"}); status.Code(err) != codes.Internal {
		t.Fatalf("panicking call = %v, want Internal", err)
	}
	if _, err := c.Hello(ctx(t), &pb.Request{Name: "ok"}); err != nil {
		t.Fatalf("server did not keep serving: %v", err)
	}
	if !strings.Contains(logs.String(), "boom") || !strings.Contains(logs.String(), "goroutine") {
		t.Fatalf("panic not logged with its stack: %s", logs.String())
	}
	// Subscriber side.
	h := recovery.Subscriber(l)(func(context.Context, string, any) error { panic("sub boom") })
	if err := h(context.Background(), "t", nil); err == nil || !strings.Contains(err.Error(), "sub boom") {
		t.Fatalf("subscriber panic = %v", err)
	}
}

func TestAuth(t *testing.T) {
	check := func(ctx context.Context, token string) (context.Context, error) {
		switch token {
		case "good":
			return ctx, nil
		case "readonly":
			return nil, errors.New("read-only token")
		}
		return nil, auth.ErrUnauthenticated
	}
	c, cc := serve(t, nil, []grpc.ServerOption{grpc.UnaryInterceptor(auth.UnaryServerInterceptor(check))})
	tests := []struct {
		name string
		opts []grpc.CallOption
		want codes.Code
	}{
		{"missing", nil, codes.Unauthenticated},
		{"wrong", []grpc.CallOption{grpc.PerRPCCredentials(auth.Bearer("nope"))}, codes.Unauthenticated},
		{"forbidden", []grpc.CallOption{grpc.PerRPCCredentials(auth.Bearer("readonly"))}, codes.PermissionDenied},
		{"good", []grpc.CallOption{grpc.PerRPCCredentials(auth.Bearer("good"))}, codes.OK},
	}
	for _, tt := range tests {
		if _, err := c.Hello(ctx(t), &pb.Request{}, tt.opts...); status.Code(err) != tt.want {
			t.Errorf("%s token: %v, want %v", tt.name, err, tt.want)
		}
	}
	// Health is exempt.
	if _, err := healthpb.NewHealthClient(cc).Check(ctx(t), &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("health check without token: %v", err)
	}
	// Subscriber side reads the message's metadata.
	h := auth.Subscriber(check)(func(context.Context, string, any) error { return nil })
	in := grpcmd.NewIncomingContext(context.Background(), grpcmd.Pairs("authorization", "Bearer good"))
	if err := h(in, "t", nil); err != nil {
		t.Fatalf("subscriber with good token: %v", err)
	}
	if err := h(context.Background(), "t", nil); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("subscriber without token: %v", err)
	}
}

func TestTimeoutDefaultAndOverride(t *testing.T) {
	c, _ := serve(t, func(ctx context.Context, _ *pb.Request) error { <-ctx.Done(); return ctx.Err() }, nil,
		grpc.WithUnaryInterceptor(timeout.UnaryClientInterceptor(50*time.Millisecond)))
	start := time.Now()
	if _, err := c.Hello(ctx(t), &pb.Request{}); status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("default timeout: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("took %v", d)
	}
	start = time.Now()
	_, err := c.Hello(ctx(t), &pb.Request{}, timeout.WithCallTimeout(300*time.Millisecond))
	if status.Code(err) != codes.DeadlineExceeded || time.Since(start) < 250*time.Millisecond {
		t.Fatalf("per-call override: %v after %v", err, time.Since(start))
	}
	// An earlier deadline on the context wins.
	short, cancel := context.WithTimeout(ctx(t), 20*time.Millisecond)
	defer cancel()
	start = time.Now()
	c.Hello(short, &pb.Request{}, timeout.WithCallTimeout(time.Minute))
	if d := time.Since(start); d > time.Second {
		t.Fatalf("the caller's deadline was not kept: %v", d)
	}
}

func TestMetadataCaseInsensitive(t *testing.T) {
	var got string
	c, _ := serve(t, func(ctx context.Context, _ *pb.Request) error {
		got, _ = metadata.Get(ctx, "X-User-ID")
		return nil
	}, nil)
	if _, err := c.Hello(metadata.Set(ctx(t), "X-User-Id", "42"), &pb.Request{}); err != nil {
		t.Fatal(err)
	}
	if got != "42" {
		t.Fatalf("server read %q", got)
	}
	// Subscribers see message headers as incoming metadata.
	in := grpcmd.NewIncomingContext(context.Background(), grpcmd.Pairs("x-user-id", "7"))
	if v, ok := metadata.Get(in, "X-USER-ID"); !ok || v != "7" {
		t.Fatalf("subscriber read %q", v)
	}
	fwd := metadata.Forward(in)
	if v, ok := metadata.Get(fwd, "x-user-id"); !ok || v != "7" {
		t.Fatalf("forwarded %q", v)
	}
}

// The hook runs once per attempt, naming the node: a retried call reports
// two attempts on two different nodes.
func TestNodeHookPerAttempt(t *testing.T) {
	reg := memory.NewRegistry()
	for _, id := range []string{"bad", "good"} {
		lis, _ := net.Listen("tcp", "127.0.0.1:0")
		s := grpc.NewServer()
		hook := func(context.Context, *pb.Request) error { return nil }
		if id == "bad" {
			hook = func(context.Context, *pb.Request) error { return status.Error(codes.Unavailable, "down") }
		}
		pb.RegisterGreeterServer(s, &greetertest.Server{Node: id, Hook: hook})
		go s.Serve(lis)
		t.Cleanup(s.Stop)
		reg.Register(ctx(t), &resolver.Service{Name: "g", Nodes: []resolver.Node{{ID: id, Address: lis.Addr().String()}}})
	}
	var mu sync.Mutex
	var attempts []nodehook.Attempt
	opts := append(randomhash.DialOptions(randomhash.WithoutHealthCheck(), randomhash.WithEjection(0, time.Second, time.Second)),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithResolvers(resolver.NewBuilder(reg)),
		grpc.WithStatsHandler(nodehook.NewClientHandler(func(_ context.Context, a nodehook.Attempt) {
			mu.Lock()
			attempts = append(attempts, a)
			mu.Unlock()
		})))
	cc, err := grpc.NewClient("memory:///g", opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	c := pb.NewGreeterClient(cc)
	for range 30 {
		mu.Lock()
		attempts = nil
		mu.Unlock()
		rsp, err := c.Hello(ctx(t), &pb.Request{}, grpc.WaitForReady(true))
		if err != nil || rsp.GetNode() != "good" {
			t.Fatal(rsp, err)
		}
		mu.Lock()
		n := len(attempts)
		first := attempts[0]
		mu.Unlock()
		if n == 2 {
			if first.Node != "bad" || first.Err == nil || attempts[1].Node != "good" || attempts[1].Err != nil || attempts[1].Addr == "" {
				t.Fatalf("attempts %+v", attempts)
			}
			return
		}
	}
	t.Fatal("no call was retried in 30 tries; the hook could not be checked")
}

func TestRateLimit(t *testing.T) {
	c, _ := serve(t, nil, []grpc.ServerOption{grpc.UnaryInterceptor(ratelimit.UnaryServerInterceptor(1, 2))})
	var codesSeen []codes.Code
	for range 4 {
		_, err := c.Hello(ctx(t), &pb.Request{})
		codesSeen = append(codesSeen, status.Code(err))
	}
	if codesSeen[0] != codes.OK || codesSeen[3] != codes.ResourceExhausted {
		t.Fatalf("codes %v: want the burst through, then ResourceExhausted", codesSeen)
	}
}

// validated is a message with a Validate method, like generated
// protoc-gen-validate code.
type validated struct{ pb.Request }

func (v *validated) Validate() error {
	if v.GetName() == "" {
		return errors.New("name is required")
	}
	return nil
}

func TestValidate(t *testing.T) {
	i := validate.UnaryServerInterceptor()
	info := &grpc.UnaryServerInfo{FullMethod: "/greeter.Greeter/Hello"}
	h := func(context.Context, any) (any, error) { return "ok", nil }
	if _, err := i(context.Background(), &validated{}, info, h); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("invalid message: %v", err)
	}
	good := &validated{}
	good.Name = "x"
	if rsp, err := i(context.Background(), good, info, h); err != nil || rsp != "ok" {
		t.Fatalf("valid message: %v %v", rsp, err)
	}
	sub := validate.Subscriber()(func(context.Context, string, any) error { return nil })
	if err := sub(context.Background(), "t", &validated{}); err == nil {
		t.Fatal("subscriber accepted an invalid message")
	}
}

func TestLoggingQuietForHealth(t *testing.T) {
	var logs bytes.Buffer
	l := slog.New(slog.NewTextHandler(&logs, nil))
	c, cc := serve(t, nil, []grpc.ServerOption{grpc.UnaryInterceptor(logging.UnaryServerInterceptor(l))})
	if _, err := healthpb.NewHealthClient(cc).Check(ctx(t), &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatal(err)
	}
	if logs.Len() != 0 {
		t.Fatalf("health check logged: %s", logs.String())
	}
	if _, err := c.Hello(ctx(t), &pb.Request{}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"greeter.Greeter", "Hello", "grpc.code=OK", "grpc.time_ms", "peer.address"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log %q lacks %s", logs.String(), want)
		}
	}
}

func TestMetricsCountCalls(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := metrics.New(reg)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := serve(t, nil, []grpc.ServerOption{grpc.UnaryInterceptor(m.UnaryServerInterceptor())},
		grpc.WithUnaryInterceptor(m.UnaryClientInterceptor()))
	for range 3 {
		if _, err := c.Hello(ctx(t), &pb.Request{}); err != nil {
			t.Fatal(err)
		}
	}
	want := `
# HELP grpc_server_handled_total Total number of RPCs completed on the server, regardless of success or failure.
# TYPE grpc_server_handled_total counter
grpc_server_handled_total{grpc_code="OK",grpc_method="Hello",grpc_service="greeter.Greeter",grpc_type="unary"} 3
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "grpc_server_handled_total"); err != nil {
		t.Fatal(err)
	}
	if n, err := testutil.GatherAndCount(reg, "grpc_client_handled_total"); err != nil || n == 0 {
		t.Fatalf("client metrics: %d series, %v", n, err)
	}
}
