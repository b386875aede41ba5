package micro_test

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"google.golang.org/grpc"

	"github.com/microgrpc/microgrpc/micro"
	pb "github.com/microgrpc/microgrpc/proto/greeter"
	"github.com/microgrpc/microgrpc/resolver/memory"
)

// Wrappers run in go-micro's order: the first given is the outermost, on
// the server and on the client.
func TestWrapperOrder(t *testing.T) {
	var mu sync.Mutex
	var trace []string
	note := func(s string) {
		mu.Lock()
		trace = append(trace, s)
		mu.Unlock()
	}
	server := func(s string) grpc.UnaryServerInterceptor {
		return func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			note("server-" + s)
			return h(ctx, req)
		}
	}
	client := func(s string) grpc.UnaryClientInterceptor {
		return func(ctx context.Context, m string, req, rsp any, cc *grpc.ClientConn, inv grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			note("client-" + s)
			return inv(ctx, m, req, rsp, cc, opts...)
		}
	}
	reg := memory.NewRegistry()
	startService(t, reg, "greeter", micro.WithUnaryServerInterceptors(server("1"), server("2")), micro.WithUnaryServerInterceptors(server("3")))
	c := newClient(t, reg, micro.WithUnaryClientInterceptors(client("1"), client("2")))
	if _, err := pb.NewGreeterClient(c.Dial("greeter")).Hello(testCtx(t), &pb.Request{}); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(trace, " "); got != "client-1 client-2 server-1 server-2 server-3" {
		t.Fatalf("order %s", got)
	}
}

func TestWithMetricsCountsCalls(t *testing.T) {
	promReg := prometheus.NewRegistry()
	reg := memory.NewRegistry()
	startService(t, reg, "greeter", micro.WithMetrics(promReg))
	c := newClient(t, reg, micro.WithMetrics(promReg)) // shares the collectors
	for range 2 {
		if _, err := pb.NewGreeterClient(c.Dial("greeter")).Hello(testCtx(t), &pb.Request{}); err != nil {
			t.Fatal(err)
		}
	}
	want := `
# HELP grpc_server_handled_total Total number of RPCs completed on the server, regardless of success or failure.
# TYPE grpc_server_handled_total counter
grpc_server_handled_total{grpc_code="OK",grpc_method="Hello",grpc_service="greeter.Greeter",grpc_type="unary"} 2
`
	if err := testutil.GatherAndCompare(promReg, strings.NewReader(want), "grpc_server_handled_total"); err != nil {
		t.Fatal(err)
	}
}

func TestWithTracingRecordsSpans(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	defer tp.Shutdown(context.Background())
	reg := memory.NewRegistry()
	startService(t, reg, "greeter", micro.WithTracing(tp))
	c := newClient(t, reg, micro.WithTracing(tp))
	if _, err := pb.NewGreeterClient(c.Dial("greeter")).Hello(testCtx(t), &pb.Request{}); err != nil {
		t.Fatal(err)
	}
	var server, client bool
	var traceIDs []string
	for _, s := range rec.Ended() {
		if s.Name() != "greeter.Greeter/Hello" {
			continue
		}
		traceIDs = append(traceIDs, s.SpanContext().TraceID().String())
		switch s.SpanKind().String() {
		case "server":
			server = true
		case "client":
			client = true
		}
	}
	if !server || !client || len(traceIDs) < 2 || traceIDs[0] != traceIDs[1] {
		t.Fatalf("spans: server %v client %v traces %v; want both sides in one trace", server, client, traceIDs)
	}
}
