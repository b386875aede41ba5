package tracing_test

import (
	"context"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.uber.org/goleak"
	"google.golang.org/grpc"

	"github.com/microgrpc/microgrpc/internal/greetertest"
	"github.com/microgrpc/microgrpc/micro"
	"github.com/microgrpc/microgrpc/micro/tracing"
	pb "github.com/microgrpc/microgrpc/proto/greeter"
	"github.com/microgrpc/microgrpc/resolver/memory"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// A call is one trace with a client and a server span.
func TestRecordsSpans(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	defer tp.Shutdown(context.Background())
	reg := memory.NewRegistry()
	runCtx, stop := context.WithCancel(ctx)
	started := make(chan struct{})
	svc := micro.NewService(micro.WithName("greeter"), micro.WithAddress("127.0.0.1:0"), micro.WithRegistry(reg),
		micro.WithContext(runCtx), micro.WithSignal(false), micro.WithDeregisterWait(0), tracing.With(tp),
		micro.WithAfterStart(func(context.Context) error { close(started); return nil }))
	pb.RegisterGreeterServer(svc.Server(), &greetertest.Server{Node: "n"})
	done := make(chan error, 1)
	go func() { done <- svc.Run() }()
	defer func() { stop(); <-done }()
	select {
	case <-started:
	case err := <-done:
		t.Fatal(err)
	}
	client := micro.NewService(micro.WithName("client"), micro.WithRegistry(reg), tracing.With(tp))
	defer client.Close()
	if _, err := pb.NewGreeterClient(client.Dial("greeter")).Hello(ctx, &pb.Request{}, grpc.WaitForReady(true)); err != nil {
		t.Fatal(err)
	}
	// The server's span ends after it sent the answer, which the client
	// may have read already: wait for it.
	var server, clientSpan bool
	var traceIDs []string
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		server, clientSpan, traceIDs = false, false, nil
		for _, s := range rec.Ended() {
			if s.Name() != "greeter.Greeter/Hello" {
				continue
			}
			traceIDs = append(traceIDs, s.SpanContext().TraceID().String())
			switch s.SpanKind().String() {
			case "server":
				server = true
			case "client":
				clientSpan = true
			}
		}
		if server && clientSpan {
			break
		}
	}
	if !server || !clientSpan || len(traceIDs) < 2 || traceIDs[0] != traceIDs[1] {
		t.Fatalf("spans: server %v client %v traces %v; want both sides in one trace", server, clientSpan, traceIDs)
	}
}
