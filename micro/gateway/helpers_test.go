package gateway_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/microgrpc/microgrpc/internal/greetertest"
	"github.com/microgrpc/microgrpc/micro"
	"github.com/microgrpc/microgrpc/micro/gateway"
	"github.com/microgrpc/microgrpc/micro/pubsub"
	pb "github.com/microgrpc/microgrpc/proto/greeter"
	"github.com/microgrpc/microgrpc/resolver"
	"github.com/microgrpc/microgrpc/resolver/memory"
)

const defaultTestTimeout = 10 * time.Second

var quietLogger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), defaultTestTimeout)
	t.Cleanup(cancel)
	return ctx
}

// hook is the test nodes' Hello hook: a request named "slow" waits for
// its deadline; one named "md" fails with the metadata it came with.
func hook(ctx context.Context, req *pb.Request) error {
	switch req.GetName() {
	case "slow":
		<-ctx.Done()
		return ctx.Err()
	case "md":
		md, _ := metadata.FromIncomingContext(ctx)
		return status.Errorf(codes.FailedPrecondition, "authorization=%q cookie=%q", md.Get("authorization"), md.Get("cookie"))
	}
	return nil
}

// node is a running greeter node.
type node struct {
	svc  *micro.Service
	stop func()
}

// startNode runs a greeter node named name in reg until cleanup (or stop).
func startNode(t *testing.T, reg resolver.Registry, name string, hook func(context.Context, *pb.Request) error, opts ...micro.Option) *node {
	t.Helper()
	return startNodeSetup(t, reg, name, hook, nil, opts...)
}

// startSubscriber runs a greeter node that also subscribes to topic, on
// the http broker at 127.0.0.1.
func startSubscriber(t *testing.T, reg resolver.Registry, name, topic string) *node {
	t.Helper()
	return startNodeSetup(t, reg, name, nil, func(svc *micro.Service) {
		if err := pubsub.RegisterSubscriber(topic, svc, func(context.Context, *pb.Event) error { return nil }); err != nil {
			t.Fatal(err)
		}
	}, micro.WithBrokerPlugin("http", "127.0.0.1:0"))
}

// startNodeSetup is startNode with setup run on the service before it
// starts.
func startNodeSetup(t *testing.T, reg resolver.Registry, name string, hook func(context.Context, *pb.Request) error, setup func(*micro.Service), opts ...micro.Option) *node {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan struct{})
	done := make(chan struct{})
	svc := micro.NewService(append([]micro.Option{
		micro.WithName(name), micro.WithAddress("127.0.0.1:0"), micro.WithRegistry(reg),
		micro.WithContext(ctx), micro.WithSignal(false), micro.WithDeregisterWait(0),
		micro.WithLogger(quietLogger),
		micro.WithAfterStart(func(context.Context) error { close(started); return nil }),
	}, opts...)...)
	pb.RegisterGreeterServer(svc.Server(), &greetertest.Server{Node: svc.ID(), Hook: hook})
	if setup != nil {
		setup(svc)
	}
	go func() {
		defer close(done)
		if err := svc.Run(); err != nil {
			t.Errorf("node %s: Run: %v", svc.ID(), err)
		}
	}()
	select {
	case <-started:
	case <-done:
		cancel()
		t.Fatal("node stopped before it started")
	case <-time.After(defaultTestTimeout):
		cancel()
		t.Fatal("node did not start")
	}
	n := &node{svc: svc}
	n.stop = func() {
		cancel()
		select {
		case <-done:
		case <-time.After(defaultTestTimeout):
			t.Error("node did not stop")
		}
	}
	t.Cleanup(n.stop)
	return n
}

// env is two greeter nodes in a memory registry and a gateway to them.
type env struct {
	reg   resolver.Registry
	nodes []*node
	gw    *gateway.Gateway
	srv   *httptest.Server
}

func newEnv(t *testing.T, opts ...gateway.Option) *env {
	t.Helper()
	reg := memory.NewRegistry()
	e := &env{reg: reg}
	for range 2 {
		e.nodes = append(e.nodes, startNode(t, reg, "greeter", nil))
	}
	e.gw, e.srv = startGateway(t, reg, opts...)
	return e
}

// startGateway serves a gateway to reg's services on 127.0.0.1.
func startGateway(t *testing.T, reg resolver.Registry, opts ...gateway.Option) (*gateway.Gateway, *httptest.Server) {
	t.Helper()
	client := micro.NewService(micro.WithName("gateway"), micro.WithRegistry(reg), micro.WithLogger(quietLogger))
	t.Cleanup(func() { client.Close() })
	gw, err := gateway.New(client, append([]gateway.Option{gateway.WithLogger(quietLogger)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(gw)
	t.Cleanup(func() {
		srv.Close()
		gw.Close()
	})
	return gw, srv
}

// serveTLS serves gw over TLS with HTTP/2 too (bidirectional streams and
// gRPC need it); srv.Client() trusts it.
func serveTLS(t *testing.T, gw *gateway.Gateway) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(gw)
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

// post sends body to the gateway and returns the answer and its body.
func post(t *testing.T, url, contentType, body string, header ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(testCtx(t), http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", contentType)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	return do(t, req)
}

func do(t *testing.T, req *http.Request) (*http.Response, string) {
	t.Helper()
	rsp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer rsp.Body.Close()
	b, err := io.ReadAll(rsp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return rsp, string(b)
}
