package controlplane_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/xds"

	"github.com/microgrpc/microgrpc/internal/exampletest"
	"github.com/microgrpc/microgrpc/internal/greetertest"
	"github.com/microgrpc/microgrpc/micro"
	"github.com/microgrpc/microgrpc/micro/controlplane"
	pb "github.com/microgrpc/microgrpc/proto/greeter"
	"github.com/microgrpc/microgrpc/resolver"
)

const defaultTestTimeout = 30 * time.Second

// Environment of a node process (the test binary itself).
const (
	envNode    = "MICROGRPC_XDS_NODE" // the node id; set: run as a node
	envEtcd    = "MICROGRPC_XDS_ETCD"
	envVersion = "MICROGRPC_XDS_VERSION"
)

// nodeTTL is the registration TTL of node processes: a killed node leaves
// the registry, and so the assignment, within it.
const nodeTTL = 3 * time.Second

// runNode is a greeter node registered in etcd, until SIGTERM (or five
// minutes, should the test die).
func runNode() int {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	svc := micro.NewService(micro.WithName("greeter"), micro.WithID(os.Getenv(envNode)), micro.WithVersion(os.Getenv(envVersion)),
		micro.WithAddress("127.0.0.1:0"), micro.WithRegistryPlugin("etcd", os.Getenv(envEtcd)),
		micro.WithRegisterTTL(nodeTTL), micro.WithRegisterInterval(time.Second),
		micro.WithContext(ctx), micro.WithLogger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))),
		micro.WithAfterStart(func(context.Context) error { fmt.Println("ready"); return nil }))
	pb.RegisterGreeterServer(svc.Server(), &greetertest.Server{Node: svc.ID()})
	if err := svc.Run(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// startNode runs the test binary again as node id, and waits until it is
// registered.
func startNode(t *testing.T, id, version, etcdAddr string) *exampletest.Process {
	t.Helper()
	n := exampletest.Start(t, os.Args[0], []string{envNode + "=" + id, envEtcd + "=" + etcdAddr, envVersion + "=" + version}, "-test.run=^$")
	n.WaitFor("ready")
	return n
}

// serveControlPlane serves cp on a free loopback port until the test ends.
func serveControlPlane(t *testing.T, cp *controlplane.ControlPlane) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cp.Serve(lis) }()
	t.Cleanup(func() {
		cp.Close()
		if err := <-done; err != controlplane.ErrClosed {
			t.Errorf("Serve returned %v, want ErrClosed", err)
		}
	})
	return lis.Addr().String()
}

// newControlPlane makes a control plane of reg, quiet unless it fails.
func newControlPlane(t *testing.T, reg resolver.Registry, opts ...controlplane.Option) *controlplane.ControlPlane {
	t.Helper()
	cp, err := controlplane.New(reg, append([]controlplane.Option{controlplane.WithLogger(testLogger(t))}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cp.Close)
	return cp
}

// testLogger logs warnings and errors through t.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// xdsConn dials xds:///service through grpc-go's own xDS client, with a
// bootstrap of its own that names the control plane at cpAddr.
func xdsConn(t *testing.T, cpAddr, service string) *grpc.ClientConn {
	t.Helper()
	bootstrap, err := controlplane.Bootstrap(controlplane.BootstrapConfig{ServerURI: cpAddr, NodeID: t.Name()})
	if err != nil {
		t.Fatal(err)
	}
	b, err := xds.NewXDSResolverWithConfigForTesting(bootstrap)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient("xds:///"+service, grpc.WithResolvers(b), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// outcome is one call.
type outcome struct {
	start time.Time
	err   error
	node  string
}

// load calls Hello from callers goroutines until stopped, recording each
// call. md, when set, is sent with every call.
type load struct {
	mu       sync.Mutex
	outcomes []outcome
	stop     atomic.Bool
	wg       sync.WaitGroup
}

func startLoad(t *testing.T, conn *grpc.ClientConn, callers int, md ...string) *load {
	l := &load{}
	client := pb.NewGreeterClient(conn)
	for range callers {
		l.wg.Go(func() {
			for !l.stop.Load() {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				if len(md) > 0 {
					ctx = metadata.AppendToOutgoingContext(ctx, md...)
				}
				start := time.Now()
				rsp, err := client.Hello(ctx, &pb.Request{Name: "xds"})
				cancel()
				l.mu.Lock()
				l.outcomes = append(l.outcomes, outcome{start: start, err: err, node: rsp.GetNode()})
				l.mu.Unlock()
				if err != nil {
					time.Sleep(10 * time.Millisecond)
				}
			}
		})
	}
	t.Cleanup(l.end)
	return l
}

func (l *load) end() { l.stop.Store(true); l.wg.Wait() }

// since returns the outcomes of calls started at or after t0.
func (l *load) since(t0 time.Time) []outcome {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []outcome
	for _, o := range l.outcomes {
		if !o.start.Before(t0) {
			out = append(out, o)
		}
	}
	return out
}

// failures returns the failed calls among outs, as text.
func failures(outs []outcome) []string {
	var out []string
	for _, o := range outs {
		if o.err != nil {
			out = append(out, fmt.Sprintf("%v after start: %v", o.start.Format("15:04:05.000"), status.Convert(o.err).Message()))
		}
	}
	return out
}

// waitFor polls cond every 10 ms until it holds or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > timeout {
			t.Fatalf("%s: not within %v", what, timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(start)
}

// answered reports which nodes answered among outs.
func answered(outs []outcome) map[string]int {
	m := map[string]int{}
	for _, o := range outs {
		if o.err == nil {
			m[o.node]++
		}
	}
	return m
}
