package micro_test

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/microgrpc/microgrpc/micro"
	"github.com/microgrpc/microgrpc/plugins"
	pb "github.com/microgrpc/microgrpc/proto/greeter"
	"github.com/microgrpc/microgrpc/resolver/memory"
)

// Dialing a bad name again and again costs one failing connection, not
// one per call: 2,000 Dials used to hold 6,000 goroutines until Close.
func TestDialBadNameRepeatedlyHoldsOneConnection(t *testing.T) {
	c := newClient(t, memory.NewRegistry())
	first := c.Dial("bad/name")
	before := runtime.NumGoroutine()
	for range 2000 {
		if cc := c.Dial("bad/name"); cc != first {
			t.Fatal("Dial of the same bad name returned a new connection")
		}
	}
	if grown := runtime.NumGoroutine() - before; grown > 20 {
		t.Fatalf("2,000 Dials of a bad name added %d goroutines", grown)
	}
	_, err := pb.NewGreeterClient(first).Hello(testCtx(t), &pb.Request{})
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("call on Dial(bad/name) = %v, want InvalidArgument", err)
	}
}

// Registry and Broker say why they have nothing, instead of returning nil.
func TestRegistryAndBrokerErrorsAreReturned(t *testing.T) {
	svc := micro.NewService(micro.WithName("c"), micro.WithRegistryPlugin("nosuch"), micro.WithLogger(quietLogger))
	defer svc.Close()
	if reg, err := svc.Registry(); reg != nil || !errors.Is(err, plugins.ErrUnknownPlugin) || !strings.Contains(err.Error(), "nosuch") {
		t.Fatalf("Registry() = %v, %v; want the unknown-plugin error", reg, err)
	}
	svc2 := micro.NewService(micro.WithName("c"), micro.WithRegistry(memory.NewRegistry()), micro.WithBrokerPlugin("nosuch"))
	defer svc2.Close()
	if b, err := svc2.Broker(); b != nil || !errors.Is(err, plugins.ErrUnknownPlugin) {
		t.Fatalf("Broker() = %v, %v; want the unknown-plugin error", b, err)
	}
}

// An option that fails in NewService is reported by Init, the first call
// a program makes after it, and by Conn, not only by Run.
func TestOptionErrorReportedByInitAndConn(t *testing.T) {
	svc := micro.NewService(micro.WithName("c"), micro.WithRegistry(memory.NewRegistry()), micro.FailingOption(errors.New("refused by test")))
	defer svc.Close()
	if err := svc.Init(micro.WithArgs([]string{}), micro.WithEnv(env(nil))); err == nil || !strings.Contains(err.Error(), "refused by test") {
		t.Fatalf("Init = %v, want the metrics error", err)
	}
	if _, err := svc.Conn("greeter"); err == nil || !strings.Contains(err.Error(), "refused by test") {
		t.Fatalf("Conn = %v, want the metrics error", err)
	}
	done := make(chan error, 1)
	go func() { done <- svc.Run() }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "refused by test") {
			t.Fatalf("Run = %v, want the metrics error", err)
		}
	case <-time.After(defaultTestTimeout):
		t.Fatal("Run did not fail")
	}
}

// Options an existing server cannot take are an error naming both, not
// dropped silently.
func TestWithGRPCServerConflicts(t *testing.T) {
	existing := grpc.NewServer()
	svc := micro.NewService(micro.WithName("c"), micro.WithRegistry(memory.NewRegistry()), micro.WithGRPCServer(existing),
		micro.WithUnaryServerInterceptors(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			return h(ctx, req)
		}), micro.WithGRPCServerOptions(grpc.MaxRecvMsgSize(1<<20)))
	defer svc.Close()
	err := svc.Init(micro.WithArgs([]string{}), micro.WithEnv(env(nil)))
	if !errors.Is(err, micro.ErrConflictingOptions) {
		t.Fatalf("Init = %v, want ErrConflictingOptions", err)
	}
	for _, want := range []string{"WithGRPCServer", "WithUnaryServerInterceptors", "WithGRPCServerOptions"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
	// Alone, WithGRPCServer is fine.
	ok := micro.NewService(micro.WithName("c"), micro.WithRegistry(memory.NewRegistry()), micro.WithGRPCServer(grpc.NewServer()))
	defer ok.Close()
	if err := ok.Init(micro.WithArgs([]string{}), micro.WithEnv(env(nil))); err != nil {
		t.Fatal(err)
	}
}

// Settings are fixed once the service is in use: Init after Dial is an
// error, and changes nothing under the connections made.
func TestInitAfterUseRefused(t *testing.T) {
	svc := newClient(t, memory.NewRegistry())
	svc.Dial("greeter")
	err := svc.Init(micro.WithArgs([]string{}), micro.WithEnv(env(map[string]string{"MICRO_CLIENT_RETRIES": "0"})))
	if !errors.Is(err, micro.ErrInitAfterUse) {
		t.Fatalf("Init after Dial = %v, want ErrInitAfterUse", err)
	}
	if got := svc.SettingsForTest().Retries; got != -1 {
		t.Fatalf("retries changed to %d by a refused Init", got)
	}
}
