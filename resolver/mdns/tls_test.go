package mdns_test

import (
	"context"
	"crypto/tls"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/microgrpc/microgrpc/internal/certs/certstest"
	"github.com/microgrpc/microgrpc/internal/greetertest"
	"github.com/microgrpc/microgrpc/micro"
	pb "github.com/microgrpc/microgrpc/proto/greeter"
	"github.com/microgrpc/microgrpc/resolver"
	"github.com/microgrpc/microgrpc/resolver/mdns"
)

// With TLS on, a rogue gRPC server announced on mDNS under a service's
// name gets no call when its certificate, though signed by the same CA,
// does not name the service: clients verify a server for the service
// name they dial. The control case, the same rogue with a certificate
// that names the service, does get calls, so the test shows that the
// rogue is discovered, dialled and picked, and that only the name keeps
// calls from it.
func TestTLSRogueNodeGetsNoCall(t *testing.T) {
	for _, c := range []struct {
		name      string
		rogue     certstest.Leaf
		wantCalls bool
	}{
		{"certificate names another service", certstest.ForHost("billing"), false},
		{"control: certificate names the service", certstest.ForHost("greeter"), true},
	} {
		t.Run(c.name, func(t *testing.T) {
			rogueTLSTest(t, c.rogue, c.wantCalls)
		})
	}
}

func rogueTLSTest(t *testing.T, rogueLeaf certstest.Leaf, wantCalls bool) {
	tctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ca, err := certstest.NewCA("ca")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	files := map[string]certstest.Files{}
	for name, leaf := range map[string]certstest.Leaf{
		"greeter": certstest.ForHost("greeter"), "client": certstest.ForHost("client"), "rogue": rogueLeaf,
	} {
		if files[name], err = ca.Write(dir, name, leaf); err != nil {
			t.Fatal(err)
		}
	}
	withTLS := func(f certstest.Files) micro.Option { return micro.WithTLS(f.Cert, f.Key, f.CA) }

	serverReg, clientReg := newRegistry(t), newRegistry(t)
	const nodes = 3
	for range nodes {
		startTLSGreeter(t, serverReg, withTLS(files["greeter"]))
	}
	found := waitNodes(t, tctx, clientReg, nodes)

	// The rogue: a plain gRPC server with the greeter and health services,
	// counting the calls it gets and the TLS handshakes clients start with
	// it for the greeter's name.
	var calls, hellos atomic.Int64
	cert, err := tls.LoadX509KeyPair(files["rogue"].Cert, files["rogue"].Key)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
		if h.ServerName == "greeter" {
			hellos.Add(1)
		}
		return nil, nil
	}}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rogue := grpc.NewServer(grpc.Creds(credentials.NewTLS(cfg)))
	pb.RegisterGreeterServer(rogue, &greetertest.Server{Node: "rogue", Hook: func(context.Context, *pb.Request) error {
		calls.Add(1)
		return nil
	}})
	healthpb.RegisterHealthServer(rogue, health.NewServer()) // SERVING
	go rogue.Serve(lis)
	defer rogue.Stop()
	// Announced on mDNS with a real node's data, but its own id and
	// address; it keeps answering, as a real node does.
	fake := found.Clone()
	fake.Nodes = []resolver.Node{{ID: "rogue", Address: lis.Addr().String(), Metadata: found.Nodes[0].Metadata}}
	rogueReg := newRegistry(t)
	if err := rogueReg.Register(tctx, fake); err != nil {
		t.Fatal(err)
	}
	waitNodes(t, tctx, clientReg, nodes+1)

	client := micro.NewService(micro.WithName("client"), micro.WithRegistry(clientReg), micro.WithLogger(quiet), withTLS(files["client"]))
	defer client.Close()
	g := pb.NewGreeterClient(client.Dial("greeter"))
	var failed int
	reached := map[string]int{}
	call := func(opts ...grpc.CallOption) {
		cctx, cancel := context.WithTimeout(tctx, 2*time.Second)
		defer cancel()
		rsp, err := g.Hello(cctx, &pb.Request{Name: "x"}, opts...)
		if err != nil {
			failed++
			t.Errorf("call failed: %v", err)
			return
		}
		reached[rsp.GetNode()]++
	}
	call(grpc.WaitForReady(true)) // the first waits for a connection
	// Until the client has tried the rogue; then as many again and more.
	n := 1
	for hellos.Load() == 0 {
		if tctx.Err() != nil {
			t.Fatalf("the client never started a TLS handshake with the rogue (%d calls)", n)
		}
		call()
		n++
	}
	for range max(n, 300) {
		call()
		n++
	}
	t.Logf("%d calls: %v, %d failed; %d handshakes with the rogue, %d calls served by it", n, reached, failed, hellos.Load(), calls.Load())
	if failed > 0 {
		t.Fatalf("%d of %d calls failed", failed, n)
	}
	switch {
	case !wantCalls && calls.Load() > 0:
		t.Fatalf("the rogue, with a certificate for another name, served %d of %d calls", calls.Load(), n)
	case wantCalls && calls.Load() == 0:
		t.Fatalf("control: the rogue with a certificate for the service served none of %d calls, so the test cannot tell", n)
	}
}

// startTLSGreeter runs a greeter node registered in reg until the test
// ends.
func startTLSGreeter(t *testing.T, reg resolver.Registry, opts ...micro.Option) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	started, done := make(chan struct{}), make(chan error, 1)
	s := micro.NewService(append([]micro.Option{
		micro.WithName("greeter"), micro.WithAddress("127.0.0.1:0"), micro.WithRegistry(reg),
		micro.WithContext(ctx), micro.WithSignal(false), micro.WithDeregisterWait(0), micro.WithLogger(quiet),
		micro.WithAfterStart(func(context.Context) error { close(started); return nil }),
	}, opts...)...)
	pb.RegisterGreeterServer(s.Server(), &greetertest.Server{Node: s.ID()})
	go func() { done <- s.Run() }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("greeter node: %v", err)
		}
	})
	select {
	case <-started:
	case err := <-done:
		done <- err
		t.Fatalf("greeter node stopped before it started: %v", err)
	case <-time.After(defaultTestTimeout):
		t.Fatal("greeter node did not start")
	}
}

// waitNodes waits until the greeter has n nodes on mDNS, and returns them
// as one service.
func waitNodes(t *testing.T, ctx context.Context, r *mdns.Registry, n int) *resolver.Service {
	t.Helper()
	for {
		svcs, err := r.GetService(ctx, "greeter")
		if err == nil && len(svcs) == 1 && len(svcs[0].Nodes) == n {
			return svcs[0]
		}
		if ctx.Err() != nil {
			t.Fatalf("greeter on mDNS: %v, %v; want %d nodes", svcs, err, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
