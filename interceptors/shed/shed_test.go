package shed_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"

	"github.com/microgrpc/microgrpc/balancer/randomhash"
	"github.com/microgrpc/microgrpc/interceptors/shed"
	"github.com/microgrpc/microgrpc/internal/greetertest"
	pb "github.com/microgrpc/microgrpc/proto/greeter"
	"github.com/microgrpc/microgrpc/resolver"
	"github.com/microgrpc/microgrpc/resolver/memory"
)

const testTimeout = 10 * time.Second

// node is a greeter server with a limiter, on 127.0.0.1.
type node struct {
	addr    string
	limiter *shed.Limiter
	hits    atomic.Int64
}

func startNode(t *testing.T, id string, delay time.Duration, opts ...shed.Option) *node {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	n := &node{addr: lis.Addr().String(), limiter: shed.New(opts...)}
	srv := grpc.NewServer(grpc.ChainUnaryInterceptor(n.limiter.UnaryServerInterceptor()),
		grpc.ChainStreamInterceptor(n.limiter.StreamServerInterceptor()))
	pb.RegisterGreeterServer(srv, &greetertest.Server{Node: id, Hook: func(ctx context.Context, _ *pb.Request) error {
		n.hits.Add(1)
		if delay > 0 {
			select {
			case <-time.After(delay):
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return nil
	}})
	hs := health.NewServer()
	hs.SetServingStatus("greeter", healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(srv, hs)
	reflection.Register(srv)
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	return n
}

func dial(t *testing.T, target string, opts ...grpc.DialOption) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient(target, append(opts, grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

func TestRefusal(t *testing.T) {
	n := startNode(t, "a", 0, shed.WithMaxLimit(0))
	cc := dial(t, "passthrough:///"+n.addr)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()

	var trailer metadata.MD
	_, err := pb.NewGreeterClient(cc).Hello(ctx, &pb.Request{Name: "x"}, grpc.Trailer(&trailer))
	st := status.Convert(err)
	if st.Code() != codes.Unavailable || !strings.HasPrefix(st.Message(), shed.RefusedMessage) {
		t.Fatalf("Hello on a node at limit 0: %v, want Unavailable %q...", err, shed.RefusedMessage)
	}
	if got := trailer.Get(shed.PushbackTrailer); len(got) != 1 || got[0] != "0" {
		t.Fatalf("trailer %s = %q, want [0]", shed.PushbackTrailer, got)
	}
	if n.hits.Load() != 0 {
		t.Fatal("the handler ran for a refused call")
	}
	if n.limiter.Refused() != 1 {
		t.Fatalf("Refused() = %d, want 1", n.limiter.Refused())
	}

	// Health and reflection are never shed.
	resp, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{Service: "greeter"})
	if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health check on a node at limit 0: %v, %v", resp, err)
	}
	// Streams are not shed by default.
	stream, err := pb.NewGreeterClient(cc).HelloStream(ctx, &pb.Request{Name: "x", Count: 1})
	if err == nil {
		_, err = stream.Recv()
	}
	if err != nil {
		t.Fatalf("stream on a node at limit 0 without ShedStreams: %v", err)
	}
}

func TestShedStreams(t *testing.T) {
	n := startNode(t, "a", 0, shed.WithMaxLimit(0), shed.ShedStreams(true))
	cc := dial(t, "passthrough:///"+n.addr)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	stream, err := pb.NewGreeterClient(cc).HelloStream(ctx, &pb.Request{Name: "x", Count: 1})
	if err == nil {
		_, err = stream.Recv()
	}
	if st := status.Convert(err); st.Code() != codes.Unavailable || !strings.HasPrefix(st.Message(), shed.RefusedMessage) {
		t.Fatalf("stream on a node at limit 0 with ShedStreams: %v", err)
	}
	// A health watch is a stream, and is never shed.
	w, err := healthpb.NewHealthClient(cc).Watch(ctx, &healthpb.HealthCheckRequest{Service: "greeter"})
	if err == nil {
		_, err = w.Recv()
	}
	if err != nil {
		t.Fatalf("health watch with ShedStreams: %v", err)
	}
}

// TestRetriedOnAnotherNode: one node takes two calls at a time, each slow;
// the other is fast. A randomhash client's calls refused by the first are
// retried on the second, and none fails.
func TestRetriedOnAnotherNode(t *testing.T) {
	small := startNode(t, "small", 20*time.Millisecond, shed.WithMinLimit(2), shed.WithMaxLimit(2))
	big := startNode(t, "big", 0)

	reg := memory.NewRegistry()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	err := reg.Register(ctx, &resolver.Service{Name: "greeter", Nodes: []resolver.Node{
		{ID: "small", Address: small.addr, HealthService: "greeter"},
		{ID: "big", Address: big.addr, HealthService: "greeter"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	cc := dial(t, "memory:///greeter", append(randomhash.DialOptions(),
		grpc.WithResolvers(resolver.NewBuilder(reg, resolver.WithCoalesceWindow(0))))...)
	client := pb.NewGreeterClient(cc)

	const callers, calls = 8, 25
	var wg sync.WaitGroup
	errs := make(chan error, callers*calls)
	for range callers {
		wg.Go(func() {
			for range calls {
				if _, err := client.Hello(ctx, &pb.Request{Name: "x"}); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	var failed []error
	for err := range errs {
		failed = append(failed, err)
	}
	if len(failed) > 0 {
		t.Fatalf("%d of %d calls failed, first: %v", len(failed), callers*calls, errors.Join(failed[0]))
	}
	refused := small.limiter.Refused()
	if refused == 0 {
		t.Fatal("the small node refused no call: the test did not overload it")
	}
	if served := small.hits.Load() + big.hits.Load(); served != callers*calls {
		t.Fatalf("handlers ran %d times for %d calls", served, callers*calls)
	}
	t.Logf("small node served %d and refused %d; big node served %d", small.hits.Load(), refused, big.hits.Load())
}

// balancer/randomhash recognises refusals by this text (its shedPrefix)
// and does not eject a node for them: the two must not drift apart.
func TestRefusedMessageIsWhatTheBalancerKnows(t *testing.T) {
	if shed.RefusedMessage != "shed: node overloaded" {
		t.Fatalf("RefusedMessage %q: change balancer/randomhash's shedPrefix with it", shed.RefusedMessage)
	}
}
