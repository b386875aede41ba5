package micro_test

import (
	"context"
	"log/slog"
	"os"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/microgrpc/microgrpc/internal/greetertest"
	"github.com/microgrpc/microgrpc/micro"
	pb "github.com/microgrpc/microgrpc/proto/greeter"
	"github.com/microgrpc/microgrpc/resolver"
)

const (
	defaultTestTimeout      = 10 * time.Second
	defaultTestShortTimeout = 10 * time.Millisecond
)

// running is a service started by startService.
type running struct {
	svc    *micro.Service
	cancel context.CancelFunc
	done   chan struct{} // closed when Run returned
	err    error         // Run's result, set before done is closed
}

// stop shuts the service down and returns Run's result.
func (r *running) stop(t *testing.T) error {
	t.Helper()
	r.cancel()
	select {
	case <-r.done:
		return r.err
	case <-time.After(defaultTestTimeout):
		t.Fatal("service did not stop")
		return nil
	}
}

// startService runs a greeter service named name on 127.0.0.1 in reg and
// waits until it is registered. It is stopped at cleanup.
func startService(t *testing.T, reg resolver.Registry, name string, opts ...micro.Option) *running {
	t.Helper()
	return startServiceHook(t, reg, name, nil, opts...)
}

// startServiceHook is startService with a hook run by every Hello.
func startServiceHook(t *testing.T, reg resolver.Registry, name string, hook func(context.Context, *pb.Request) error, opts ...micro.Option) *running {
	t.Helper()
	return startServiceFull(t, reg, name, hook, nil, opts...)
}

// startServiceWithSetup runs setup on the service before it starts.
func startServiceWithSetup(t *testing.T, reg resolver.Registry, name string, setup func(*micro.Service), opts ...micro.Option) *running {
	t.Helper()
	return startServiceFull(t, reg, name, nil, setup, opts...)
}

func startServiceFull(t *testing.T, reg resolver.Registry, name string, hook func(context.Context, *pb.Request) error, setup func(*micro.Service), opts ...micro.Option) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan struct{})
	all := append([]micro.Option{
		micro.WithName(name),
		micro.WithAddress("127.0.0.1:0"),
		micro.WithRegistry(reg),
		micro.WithContext(ctx),
		micro.WithSignal(false),
		micro.WithDeregisterWait(0),
		micro.WithLogger(quietLogger),
		micro.WithAfterStart(func(context.Context) error { close(started); return nil }),
	}, opts...)
	svc := micro.NewService(all...)
	pb.RegisterGreeterServer(svc.Server(), &greetertest.Server{Node: svc.ID(), Hook: hook})
	if setup != nil {
		setup(svc)
	}
	r := &running{svc: svc, cancel: cancel, done: make(chan struct{})}
	go func() {
		r.err = svc.Run()
		close(r.done)
	}()
	select {
	case <-started:
	case <-r.done:
		cancel()
		t.Fatalf("Run() = %v before start", r.err)
	case <-time.After(defaultTestTimeout):
		cancel()
		t.Fatal("service did not start")
	}
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(defaultTestTimeout):
			t.Error("service did not stop at cleanup")
		}
	})
	return r
}

// newClient returns a client-only service in reg, closed at cleanup.
func newClient(t *testing.T, reg resolver.Registry, opts ...micro.Option) *micro.Service {
	t.Helper()
	svc := micro.NewService(append([]micro.Option{micro.WithName("client"), micro.WithRegistry(reg)}, opts...)...)
	t.Cleanup(func() { svc.Close() })
	return svc
}

// plainConn dials addr with grpc-go alone.
func plainConn(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

// quietLogger keeps the test output to warnings and errors.
var quietLogger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), defaultTestTimeout)
	t.Cleanup(cancel)
	return ctx
}
