package controlplane_test

import (
	"context"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/microgrpc/microgrpc/internal/greetertest"
	"github.com/microgrpc/microgrpc/micro/controlplane"
	pb "github.com/microgrpc/microgrpc/proto/greeter"
	"github.com/microgrpc/microgrpc/resolver"
	"github.com/microgrpc/microgrpc/resolver/memory"
)

// inprocNode is a greeter node in the test process, registered in reg.
type inprocNode struct {
	id     string
	addr   string
	health *health.Server
}

func startInprocNode(t *testing.T, reg resolver.Registry, id, version string, md map[string]string) *inprocNode {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	pb.RegisterGreeterServer(gs, &greetertest.Server{Node: id})
	hs := health.NewServer()
	hs.SetServingStatus("greeter", healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(gs, hs)
	go gs.Serve(lis)
	t.Cleanup(gs.Stop)
	n := &inprocNode{id: id, addr: lis.Addr().String(), health: hs}
	ctx, cancel := context.WithTimeout(context.Background(), defaultTestTimeout)
	defer cancel()
	if err := reg.Register(ctx, &resolver.Service{Name: "greeter", Version: version,
		Nodes: []resolver.Node{{ID: id, Address: n.addr, Metadata: md, HealthService: "greeter"}}}); err != nil {
		t.Fatal(err)
	}
	return n
}

// Versions: a call with x-version: v2 reaches only the v2 node, and with
// the default route weighted all to v1, a call without one never does.
func TestVersionRoutes(t *testing.T) {
	reg := memory.NewRegistry()
	startInprocNode(t, reg, "a1", "v1", nil)
	startInprocNode(t, reg, "a2", "v1", nil)
	startInprocNode(t, reg, "b1", "v2", nil)
	cp := newControlPlane(t, reg, controlplane.WithVersionWeights("greeter", map[string]uint32{"v1": 1}))
	conn := xdsConn(t, serveControlPlane(t, cp), "greeter")

	t0 := time.Now()
	plain := startLoad(t, conn, 2)
	v2 := startLoad(t, conn, 2, "x-version", "v2")
	waitFor(t, defaultTestTimeout, "v1 nodes answer calls without a version, and v2 calls get answers", func() bool {
		a := answered(plain.since(t0))
		return a["a1"] > 0 && a["a2"] > 0 && len(answered(v2.since(t0))) > 0
	})
	time.Sleep(300 * time.Millisecond)
	plain.end()
	v2.end()
	if a := answered(plain.outcomes); a["b1"] > 0 || len(failures(plain.outcomes)) > 0 {
		t.Errorf("calls without a version: answers %v, %d failures; want v1 nodes only, no failure", a, len(failures(plain.outcomes)))
	}
	if a := answered(v2.outcomes); len(a) != 1 || a["b1"] == 0 || len(failures(v2.outcomes)) > 0 {
		t.Errorf("calls with x-version: v2: answers %v, %d failures; want b1 only, no failure", a, len(failures(v2.outcomes)))
	}
}

// Weights between versions: both versions get calls that name none.
func TestVersionWeights(t *testing.T) {
	reg := memory.NewRegistry()
	startInprocNode(t, reg, "a1", "v1", nil)
	startInprocNode(t, reg, "b1", "v2", nil)
	cp := newControlPlane(t, reg, controlplane.WithVersionWeights("greeter", map[string]uint32{"v1": 50, "v2": 50, "v3": 100}))
	conn := xdsConn(t, serveControlPlane(t, cp), "greeter")
	t0 := time.Now()
	l := startLoad(t, conn, 2)
	waitFor(t, defaultTestTimeout, "both versions answer", func() bool {
		a := answered(l.since(t0))
		return a["a1"] > 0 && a["b1"] > 0
	})
	l.end()
	// v3 has no nodes: it is left out of the split, so no call fails.
	if f := failures(l.outcomes); len(f) > 0 {
		t.Errorf("%d calls failed: %v", len(f), f)
	}
}

// With health checks, a node that says NOT_SERVING is UNHEALTHY in the
// assignment and gets no calls; SERVING again, it gets calls again.
func TestHealthChecks(t *testing.T) {
	reg := memory.NewRegistry()
	startInprocNode(t, reg, "a1", "", map[string]string{"zone": "z1"})
	sick := startInprocNode(t, reg, "a2", "", map[string]string{"zone": "z2", "weight": "3"})
	cp := newControlPlane(t, reg, controlplane.WithHealthCheck(50*time.Millisecond))
	conn := xdsConn(t, serveControlPlane(t, cp), "greeter")
	l := startLoad(t, conn, 2)
	waitFor(t, defaultTestTimeout, "both nodes answer", func() bool {
		a := answered(l.since(time.Time{}))
		return a["a1"] > 0 && a["a2"] > 0
	})

	sick.health.SetServingStatus("greeter", healthpb.HealthCheckResponse_NOT_SERVING)
	waitFor(t, 5*time.Second, "a2 marked UNHEALTHY", func() bool {
		return controlplane.AssignmentNodes(cp, "greeter")["a2"] == "UNHEALTHY"
	})
	time.Sleep(200 * time.Millisecond) // the clients hear of it
	tSick := time.Now()
	time.Sleep(500 * time.Millisecond)
	if a := answered(l.since(tSick)); a["a2"] > 0 || a["a1"] == 0 {
		t.Errorf("while a2 is NOT_SERVING, answers %v; want a1 only", a)
	}

	sick.health.SetServingStatus("greeter", healthpb.HealthCheckResponse_SERVING)
	tWell := time.Now()
	waitFor(t, 5*time.Second, "a2 answers again", func() bool { return answered(l.since(tWell))["a2"] > 0 })
	l.end()
	if f := failures(l.outcomes); len(f) > 0 {
		t.Errorf("%d calls failed: %v", len(f), f)
	}
}
