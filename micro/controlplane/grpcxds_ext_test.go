package controlplane_test

import (
	"testing"
	"time"

	_ "google.golang.org/grpc/xds" // the xds:/// scheme and its balancers

	"github.com/microgrpc/microgrpc/internal/etcdtest"
	"github.com/microgrpc/microgrpc/micro/controlplane"
	"github.com/microgrpc/microgrpc/resolver/etcd"
)

// grpc-go's own xDS client, fed by the control plane of an etcd registry
// of three node processes: every node gets calls; a new node gets calls
// within a second of registering; a node stopped gracefully leaves the
// assignment at once, with no failed call; a node killed with SIGKILL
// leaves it within the registration TTL, and calls keep succeeding on
// the others.
func TestGRPCXDSClientFollowsEtcd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts node processes")
	}
	srv, err := etcdtest.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	nodes := map[string]interface{ Stop() error }{}
	procs := map[string]func(){}
	for _, id := range []string{"n1", "n2", "n3"} {
		p := startNode(t, id, "v1", srv.Endpoint())
		nodes[id] = p
		procs[id] = p.Kill
	}
	reg, err := etcd.NewRegistry(etcd.WithEndpoints(srv.Endpoint()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	cp := newControlPlane(t, reg)
	addr := serveControlPlane(t, cp)
	conn := xdsConn(t, addr, "greeter")

	t0 := time.Now()
	l := startLoad(t, conn, 4)
	waitFor(t, defaultTestTimeout, "every node answers", func() bool {
		a := answered(l.since(t0))
		return a["n1"] > 0 && a["n2"] > 0 && a["n3"] > 0
	})

	// A new node gets calls within a second of registering.
	tNew := time.Now()
	n4 := startNode(t, "n4", "v1", srv.Endpoint())
	// startNode returns once the node said it registered.
	took := waitFor(t, defaultTestTimeout, "the new node answers", func() bool { return answered(l.since(tNew))["n4"] > 0 })
	t.Logf("new node: first call %v after it registered", took.Round(time.Millisecond))
	if took > time.Second {
		t.Errorf("the new node got its first call %v after registering, want within 1 s", took)
	}

	// Graceful stop: out of the assignment at once, no failed call.
	tStop := time.Now()
	stopped := make(chan error, 1)
	go func() { stopped <- n4.Stop() }()
	gone := waitFor(t, 5*time.Second, "the stopped node leaves the assignment", func() bool {
		_, in := controlplane.AssignmentNodes(cp, "greeter")["n4"]
		return !in
	})
	if err := <-stopped; err != nil {
		t.Errorf("n4 stop: %v", err)
	}
	t.Logf("graceful stop: out of the assignment %v after SIGTERM", gone.Round(time.Millisecond))
	if gone > time.Second {
		t.Errorf("a node stopped gracefully left the assignment after %v, want at once", gone)
	}
	time.Sleep(200 * time.Millisecond)
	if f := failures(l.since(tStop)); len(f) > 0 {
		t.Errorf("%d calls failed around a graceful stop: %v", len(f), f)
	}

	// kill -9: out within the TTL, calls keep succeeding.
	tKill := time.Now()
	procs["n3"]()
	left := waitFor(t, nodeTTL+3*time.Second, "the killed node leaves the assignment", func() bool {
		_, in := controlplane.AssignmentNodes(cp, "greeter")["n3"]
		return !in
	})
	t.Logf("kill -9: out of the assignment %v after the kill (TTL %v)", left.Round(time.Millisecond), nodeTTL)
	time.Sleep(300 * time.Millisecond)
	after := l.since(tKill)
	if f := failures(after); len(f) > 0 {
		t.Errorf("%d calls failed after a node was killed: %v", len(f), f)
	}
	a := answered(after)
	if a["n1"] == 0 || a["n2"] == 0 {
		t.Errorf("after the kill, answers by node %v: want n1 and n2 to keep answering", a)
	}
	l.end()
	for _, id := range []string{"n1", "n2"} {
		if err := nodes[id].Stop(); err != nil {
			t.Errorf("%s stop: %v", id, err)
		}
	}
}
