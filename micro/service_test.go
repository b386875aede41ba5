package micro_test

import (
	"context"
	"errors"
	"io"
	"runtime"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	reflectionv1alphapb "google.golang.org/grpc/reflection/grpc_reflection_v1alpha"
	"google.golang.org/grpc/status"

	"github.com/microgrpc/microgrpc/internal/greetertest"
	"github.com/microgrpc/microgrpc/micro"
	pb "github.com/microgrpc/microgrpc/proto/greeter"
	"github.com/microgrpc/microgrpc/resolver"
	"github.com/microgrpc/microgrpc/resolver/memory"
)

func TestDialAllCallKinds(t *testing.T) {
	reg := memory.NewRegistry()
	srv := startService(t, reg, "greeter")
	client := pb.NewGreeterClient(newClient(t, reg).Dial("greeter"))
	ctx := testCtx(t)

	rsp, err := client.Hello(ctx, &pb.Request{Name: "John"})
	if err != nil {
		t.Fatalf("Hello: %v", err)
	}
	if rsp.GetMsg() != "Hello John" || rsp.GetNode() != srv.svc.ID() {
		t.Fatalf("Hello = %q from %q, want %q from %q", rsp.GetMsg(), rsp.GetNode(), "Hello John", srv.svc.ID())
	}

	ss, err := client.HelloStream(ctx, &pb.Request{Name: "Ann", Count: 3})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for {
		r, err := ss.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("HelloStream.Recv: %v", err)
		}
		got = append(got, r.GetMsg())
	}
	if want := "Hello Ann #1|Hello Ann #2|Hello Ann #3"; strings.Join(got, "|") != want {
		t.Fatalf("HelloStream = %q, want %q", got, want)
	}

	cs, err := client.HelloMany(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"a", "b", "c"} {
		if err := cs.Send(&pb.Request{Name: n}); err != nil {
			t.Fatal(err)
		}
	}
	r, err := cs.CloseAndRecv()
	if err != nil || r.GetMsg() != "Hello a, b, c" {
		t.Fatalf("HelloMany = %q, %v; want %q", r.GetMsg(), err, "Hello a, b, c")
	}

	bidi, err := client.Chat(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"x", "y"} {
		if err := bidi.Send(&pb.Request{Name: n}); err != nil {
			t.Fatal(err)
		}
		r, err := bidi.Recv()
		if err != nil || r.GetMsg() != "Hello "+n {
			t.Fatalf("Chat reply = %q, %v; want %q", r.GetMsg(), err, "Hello "+n)
		}
	}
	if err := bidi.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if _, err := bidi.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("Chat after CloseSend: %v, want EOF", err)
	}
}

func TestDialCachesPerName(t *testing.T) {
	c := newClient(t, memory.NewRegistry())
	if a1, a2 := c.Dial("a"), c.Dial("a"); a1 != a2 {
		t.Error("two Dial(\"a\") returned different connections")
	}
	if c.Dial("a") == c.Dial("b") {
		t.Error("Dial(\"a\") and Dial(\"b\") share a connection")
	}
}

func TestDialInvalidNameFailsCalls(t *testing.T) {
	c := newClient(t, memory.NewRegistry())
	if _, err := c.Conn("a/b"); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("Conn(a/b) error = %v, want InvalidArgument", err)
	}
	_, err := pb.NewGreeterClient(c.Dial("a/b")).Hello(testCtx(t), &pb.Request{})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "a/b") {
		t.Fatalf("call on Dial(a/b) = %v, want InvalidArgument naming the name", err)
	}
}

func TestDialUnknownServiceSaysWhere(t *testing.T) {
	c := newClient(t, memory.NewRegistry())
	_, err := pb.NewGreeterClient(c.Dial("nobody")).Hello(testCtx(t), &pb.Request{})
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), `"nobody"`) || !strings.Contains(err.Error(), "memory") {
		t.Fatalf("call to unregistered service = %v, want Unavailable naming service and registry", err)
	}
}

func TestClosedServiceDialFails(t *testing.T) {
	c := micro.NewService(micro.WithName("c"), micro.WithRegistry(memory.NewRegistry()))
	c.Close()
	if _, err := c.Conn("greeter"); !errors.Is(err, micro.ErrClosed) {
		t.Fatalf("Conn after Close = %v, want ErrClosed", err)
	}
	if err := c.Run(); !errors.Is(err, micro.ErrClosed) {
		t.Fatalf("Run after Close = %v, want ErrClosed", err)
	}
}

// A client that imports nothing of microgrpc but the generated code calls
// the service by address on the standard method path.
func TestPlainGRPCClientByAddress(t *testing.T) {
	srv := startService(t, memory.NewRegistry(), "greeter")
	cc := plainConn(t, srv.svc.Address())
	var rsp pb.Response
	if err := cc.Invoke(testCtx(t), "/greeter.Greeter/Hello", &pb.Request{Name: "plain"}, &rsp); err != nil {
		t.Fatalf("Invoke: %v", err)
	}
	if rsp.GetMsg() != "Hello plain" {
		t.Fatalf("got %q", rsp.GetMsg())
	}
}

func TestRegistersEndpointsFromServer(t *testing.T) {
	reg := memory.NewRegistry()
	srv := startService(t, reg, "greeter", micro.WithVersion("v7"), micro.WithMetadata(map[string]string{"zone": "a"}))
	svcs, err := reg.GetService(testCtx(t), "greeter")
	if err != nil {
		t.Fatal(err)
	}
	if len(svcs) != 1 || svcs[0].Version != "v7" || len(svcs[0].Nodes) != 1 {
		t.Fatalf("registered %+v", svcs)
	}
	n := svcs[0].Nodes[0]
	if n.ID != srv.svc.ID() || n.Address != srv.svc.Address() || n.Metadata["zone"] != "a" || n.HealthService != "greeter" {
		t.Fatalf("node = %+v", n)
	}
	var names []string
	for _, e := range svcs[0].Endpoints {
		names = append(names, e.Name)
		if e.Name == "/greeter.Greeter/Chat" && !(e.ClientStreaming && e.ServerStreaming) {
			t.Errorf("Chat endpoint %+v not marked bidi", e)
		}
	}
	want := "/greeter.Greeter/Chat /greeter.Greeter/Hello /greeter.Greeter/HelloMany /greeter.Greeter/HelloStream"
	if strings.Join(names, " ") != want {
		t.Fatalf("endpoints = %v, want %v (health and reflection left out)", names, want)
	}
}

func TestHealthServingThenNotServingDuringShutdown(t *testing.T) {
	srv := startService(t, memory.NewRegistry(), "greeter", micro.WithDeregisterWait(2*time.Second))
	hc := healthpb.NewHealthClient(plainConn(t, srv.svc.Address()))
	ctx := testCtx(t)
	// "greeter" is the name the service was deployed as
	// (grpc_health_probe -service=greeter).
	for _, name := range []string{"", "greeter.Greeter", "greeter"} {
		rsp, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: name})
		if err != nil || rsp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("Check(%q) = %v, %v; want SERVING", name, rsp.GetStatus(), err)
		}
	}
	srv.cancel()
	// During the deregister wait the server still answers, NOT_SERVING.
	for _, name := range []string{"greeter.Greeter", "greeter"} {
		for {
			rsp, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: name})
			if err != nil {
				t.Fatalf("Check during shutdown: %v", err)
			}
			if rsp.GetStatus() == healthpb.HealthCheckResponse_NOT_SERVING {
				break
			}
			time.Sleep(defaultTestShortTimeout)
		}
	}
	if err := srv.stop(t); err != nil {
		t.Fatalf("Run() = %v, want nil", err)
	}
}

func TestReflectionListsGreeter(t *testing.T) {
	srv := startService(t, memory.NewRegistry(), "greeter")
	cc := plainConn(t, srv.svc.Address())
	ctx := testCtx(t)

	stream, err := reflectionpb.NewServerReflectionClient(cc).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	rsp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range rsp.GetListServicesResponse().GetService() {
		names = append(names, s.GetName())
	}
	if !strings.Contains(strings.Join(names, " "), "greeter.Greeter") {
		t.Fatalf("reflection v1 lists %v, want greeter.Greeter", names)
	}
	stream.CloseSend()

	old, err := reflectionv1alphapb.NewServerReflectionClient(cc).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	//lint:ignore SA1019 v1alpha is deprecated, and still what older clients (grpcurl before 1.8.8) speak.
	if err := old.Send(&reflectionv1alphapb.ServerReflectionRequest{MessageRequest: &reflectionv1alphapb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	if _, err := old.Recv(); err != nil {
		t.Fatalf("reflection v1alpha: %v", err)
	}
	old.CloseSend()
}

func TestHealthAndReflectionCanBeTurnedOff(t *testing.T) {
	srv := startService(t, memory.NewRegistry(), "greeter", micro.WithHealth(false), micro.WithReflection(false))
	info := srv.svc.Server().GetServiceInfo()
	for _, name := range []string{"grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection"} {
		if _, ok := info[name]; ok {
			t.Errorf("%s registered although turned off", name)
		}
	}
	if srv.svc.Health() != nil {
		t.Error("Health() != nil with health off")
	}
}

func TestInFlightCallCompletesDuringShutdown(t *testing.T) {
	reg := memory.NewRegistry()
	entered := make(chan struct{})
	release := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	svc := micro.NewService(micro.WithName("slow"), micro.WithAddress("127.0.0.1:0"), micro.WithRegistry(reg),
		micro.WithContext(ctx), micro.WithSignal(false), micro.WithDeregisterWait(0))
	pb.RegisterGreeterServer(svc.Server(), &greetertest.Server{Node: "slow", Hook: func(context.Context, *pb.Request) error {
		close(entered)
		<-release
		return nil
	}})
	done := make(chan error, 1)
	go func() { done <- svc.Run() }()

	client := newClient(t, reg)
	callErr := make(chan error, 1)
	go func() {
		cctx, ccancel := context.WithTimeout(context.Background(), defaultTestTimeout)
		defer ccancel()
		_, err := pb.NewGreeterClient(client.Dial("slow")).Hello(cctx, &pb.Request{Name: "x"}, grpc.WaitForReady(true))
		callErr <- err
	}()
	select {
	case <-entered:
	case <-time.After(defaultTestTimeout):
		t.Fatal("call never reached the handler")
	}
	cancel() // shutdown begins with the call in flight
	// Shutdown deregisters before it stops the server: wait for that, then
	// let the handler finish.
	waitNotFound(t, reg, "slow")
	close(release)
	if err := <-callErr; err != nil {
		t.Fatalf("in-flight call failed: %v", err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Run() = %v", err)
	}
}

func waitNotFound(t *testing.T, reg resolver.Registry, name string) {
	t.Helper()
	ctx := testCtx(t)
	for {
		_, err := reg.GetService(ctx, name)
		if errors.Is(err, resolver.ErrNotFound) {
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("%q still registered: %v", name, err)
		}
		time.Sleep(defaultTestShortTimeout)
	}
}

func TestNodeGoneAfterShutdown(t *testing.T) {
	reg := memory.NewRegistry()
	srv := startService(t, reg, "greeter")
	if _, err := reg.GetService(testCtx(t), "greeter"); err != nil {
		t.Fatal(err)
	}
	if err := srv.stop(t); err != nil {
		t.Fatalf("Run() = %v", err)
	}
	// Deregistration is part of shutdown, not left to the TTL.
	if _, err := reg.GetService(testCtx(t), "greeter"); !errors.Is(err, resolver.ErrNotFound) {
		t.Fatalf("GetService after shutdown = %v, want ErrNotFound", err)
	}
}

func TestHeartbeatKeepsRegistrationAlive(t *testing.T) {
	reg := memory.NewRegistry()
	// Generous margins: CI runs every package at once under -race.
	startService(t, reg, "greeter", micro.WithRegisterTTL(700*time.Millisecond), micro.WithRegisterInterval(100*time.Millisecond))
	deadline := time.Now().Add(2 * time.Second) // about three TTLs
	for time.Now().Before(deadline) {
		if _, err := reg.GetService(testCtx(t), "greeter"); err != nil {
			t.Fatalf("registration lapsed despite heartbeats: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestRegisterCheckHoldsRegistrationBack(t *testing.T) {
	reg := memory.NewRegistry()
	healthy := make(chan bool, 1)
	healthy <- false
	var ok bool
	check := func(context.Context) error {
		select {
		case ok = <-healthy:
		default:
		}
		if !ok {
			return errors.New("database unreachable")
		}
		return nil
	}
	startService(t, reg, "greeter", micro.WithRegisterCheck(check), micro.WithRegisterInterval(20*time.Millisecond))
	if _, err := reg.GetService(testCtx(t), "greeter"); !errors.Is(err, resolver.ErrNotFound) {
		t.Fatalf("registered while the check fails: %v", err)
	}
	healthy <- true
	waitFound(t, reg, "greeter")
	healthy <- false
	waitNotFound(t, reg, "greeter")
}

func waitFound(t *testing.T, reg resolver.Registry, name string) []*resolver.Service {
	t.Helper()
	ctx := testCtx(t)
	for {
		svcs, err := reg.GetService(ctx, name)
		if err == nil {
			return svcs
		}
		if ctx.Err() != nil {
			t.Fatalf("%q never registered: %v", name, err)
		}
		time.Sleep(defaultTestShortTimeout)
	}
}

func TestChangedMetadataIsReannounced(t *testing.T) {
	reg := memory.NewRegistry()
	srv := startService(t, reg, "greeter", micro.WithRegisterTTL(2*time.Hour), micro.WithRegisterInterval(time.Hour), micro.WithMetadata(map[string]string{"color": "blue"}))
	srv.svc.SetMetadata(map[string]string{"color": "green"})
	ctx := testCtx(t)
	for {
		svcs := waitFound(t, reg, "greeter")
		if svcs[0].Nodes[0].Metadata["color"] == "green" {
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("metadata change not announced: %+v", svcs[0].Nodes[0].Metadata)
		}
		time.Sleep(defaultTestShortTimeout)
	}
}

func TestRunErrors(t *testing.T) {
	reg := memory.NewRegistry()
	tests := []struct {
		name string
		opts []micro.Option
		want string
	}{
		{"no name", nil, "empty service name"},
		{"slash in name", []micro.Option{micro.WithName("a/b")}, "contains '/'"},
		{"bad address", []micro.Option{micro.WithName("x"), micro.WithAddress("127.0.0.1:notaport")}, "listen"},
		{"interval not below ttl", []micro.Option{micro.WithName("x"), micro.WithRegisterTTL(time.Second), micro.WithRegisterInterval(time.Second)}, "shorter than"},
		{"before-start hook", []micro.Option{micro.WithName("x"), micro.WithBeforeStart(func(context.Context) error { return errors.New("boom") })}, "boom"},
		{"register fails", []micro.Option{micro.WithName("x"), micro.WithID("bad/id")}, "register"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			svc := micro.NewService(append([]micro.Option{micro.WithRegistry(reg), micro.WithSignal(false), micro.WithAddress("127.0.0.1:0")}, tt.opts...)...)
			err := svc.Run()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Run() = %v, want error containing %q", err, tt.want)
			}
		})
	}
}

func TestHooksRunInOrder(t *testing.T) {
	var got []string
	rec := func(s string) micro.Hook {
		return func(context.Context) error { got = append(got, s); return nil }
	}
	srv := startService(t, memory.NewRegistry(), "greeter",
		micro.WithBeforeStart(rec("before-start")), micro.WithAfterStart(rec("after-start")),
		micro.WithBeforeStop(rec("before-stop")), micro.WithAfterStop(rec("after-stop")))
	if err := srv.stop(t); err != nil {
		t.Fatal(err)
	}
	if want := "before-start after-start before-stop after-stop"; strings.Join(got, " ") != want {
		t.Fatalf("hooks ran %v, want %v", got, want)
	}
}

func TestOversizedMessageResourceExhausted(t *testing.T) {
	srv := startService(t, memory.NewRegistry(), "greeter", micro.WithGRPCServerOptions(grpc.MaxRecvMsgSize(1024)))
	client := pb.NewGreeterClient(plainConn(t, srv.svc.Address()))
	_, err := client.Hello(testCtx(t), &pb.Request{Name: strings.Repeat("x", 4096)})
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("oversized call = %v, want ResourceExhausted", err)
	}
	if _, err := client.Hello(testCtx(t), &pb.Request{Name: "small"}); err != nil {
		t.Fatalf("server stopped serving after an oversized message: %v", err)
	}
}

// A client holding a health Watch open (as load balancers do) does not
// make a graceful stop wait out the grace period: the watcher is told
// NOT_SERVING, then its stream ends.
func TestShutdownWithOpenHealthWatchIsQuick(t *testing.T) {
	const grace = 10 * time.Second
	srv := startService(t, memory.NewRegistry(), "greeter", micro.WithGracePeriod(grace))
	hc := healthpb.NewHealthClient(plainConn(t, srv.svc.Address()))
	stream, err := hc.Watch(testCtx(t), &healthpb.HealthCheckRequest{Service: "greeter"})
	if err != nil {
		t.Fatal(err)
	}
	if rsp, err := stream.Recv(); err != nil || rsp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("first Watch answer %v, %v", rsp, err)
	}
	start := time.Now()
	if err := srv.stop(t); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > grace/2 {
		t.Fatalf("stop with an open health watch took %v (grace %v)", took, grace)
	}
	rsp, err := stream.Recv()
	if err != nil || rsp.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("the watcher was not told NOT_SERVING before its stream ended: %v, %v", rsp, err)
	}
	if _, err := stream.Recv(); status.Code(err) != codes.Unavailable {
		t.Fatalf("stream end = %v, want Unavailable", err)
	}
}

// streamWorkers counts the goroutines grpc-go keeps as stream workers.
func streamWorkers() int {
	buf := make([]byte, 1<<22)
	return strings.Count(string(buf[:runtime.Stack(buf, true)]), "grpc.(*Server).serverWorker(")
}

// A service's server keeps DefaultStreamWorkers workers, and lets them go
// whichever way the service ends: Close without Run, a Run that fails
// before serving, Server after Close; WithGRPCServerOptions can turn them
// off.
func TestStreamWorkersDefaultAndReleased(t *testing.T) {
	// Servers of earlier tests may still be letting their workers go.
	waitWorkers(t, 0, "earlier tests")
	svc := micro.NewService(micro.WithName("idle"), micro.WithRegistry(memory.NewRegistry()))
	pb.RegisterGreeterServer(svc.Server(), &greetertest.Server{})
	waitWorkers(t, micro.DefaultStreamWorkers, "Server")
	svc.Close()
	waitWorkers(t, 0, "Close without Run")

	svc = micro.NewService(micro.WithName("bad"), micro.WithRegistry(memory.NewRegistry()), micro.WithAddress("127.0.0.1:99999"), micro.WithSignal(false))
	pb.RegisterGreeterServer(svc.Server(), &greetertest.Server{})
	if err := svc.Run(); err == nil {
		t.Fatal("Run on port 99999 succeeded")
	}
	waitWorkers(t, 0, "a Run that failed to listen")

	svc.Server() // after Close: made, and stopped at once
	waitWorkers(t, 0, "Server after Close")

	svc = micro.NewService(micro.WithName("off"), micro.WithRegistry(memory.NewRegistry()), micro.WithGRPCServerOptions(grpc.NumStreamWorkers(0)))
	svc.Server()
	time.Sleep(50 * time.Millisecond) // workers, if any, have started
	if got := streamWorkers(); got != 0 {
		t.Errorf("NumStreamWorkers(0): %d workers, want 0", got)
	}
	svc.Close()
}

func waitWorkers(t *testing.T, want int, after string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for streamWorkers() != want {
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %d stream workers, want %d", after, streamWorkers(), want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
