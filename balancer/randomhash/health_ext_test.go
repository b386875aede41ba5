package randomhash_test

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/microgrpc/microgrpc/balancer/randomhash"
	pb "github.com/microgrpc/microgrpc/proto/greeter"
	"github.com/microgrpc/microgrpc/resolver"
)

// calls makes n calls and counts them by answering node.
func calls(t *testing.T, c pb.GreeterClient, n int) map[string]int {
	t.Helper()
	got := map[string]int{}
	for i := range n {
		rsp, err := c.Hello(ctx(t), &pb.Request{}, grpc.WaitForReady(true))
		if err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
		got[rsp.GetNode()]++
	}
	return got
}

// A node whose record names a health service but that does not serve it
// (another gRPC server behind a stale record: SERVING for "", unknown
// under the name) never gets a call; one registered without a name (a
// plain grpc-go server) gets calls on its overall health.
func TestServiceHealthNameGatesNodes(t *testing.T) {
	f := newFleet(t)
	f.add("good", "", nil)
	stale := f.add("stale", "", nil)
	stale.health.SetServingStatus("greeter", healthpb.HealthCheckResponse_SERVICE_UNKNOWN)
	plain := f.add("plain", "", nil)
	plain.health.SetServingStatus("greeter", healthpb.HealthCheckResponse_SERVICE_UNKNOWN)
	// Re-register plain without a health service name.
	if err := f.reg.Register(ctx(t), &resolver.Service{Name: "greeter",
		Nodes: []resolver.Node{{ID: "plain", Address: plain.addr}}}); err != nil {
		t.Fatal(err)
	}
	c := f.client(randomhash.WithPick(randomhash.PickRandom)) // both must get calls
	waitAll(t, c, "good", "plain")
	got := calls(t, c, 200)
	if got["stale"] != 0 || got["good"] == 0 || got["plain"] == 0 {
		t.Fatalf("calls by node %v: want none to stale, some to good and plain", got)
	}
}

// The service name's status is followed: NOT_SERVING under it takes the
// node out while "" stays SERVING, SERVING brings it back.
func TestServiceHealthNameFollowed(t *testing.T) {
	f := newFleet(t)
	a := f.add("a", "", nil)
	f.add("b", "", nil)
	c := f.client()
	waitAll(t, c, "a", "b")
	a.health.SetServingStatus("greeter", healthpb.HealthCheckResponse_NOT_SERVING)
	eventually(t, "a to get no calls", func() bool { return calls(t, c, 50)["a"] == 0 })
	a.health.SetServingStatus("greeter", healthpb.HealthCheckResponse_SERVING)
	eventually(t, "a to get calls again", func() bool { return calls(t, c, 50)["a"] > 0 })
}

// With every connected node failing its service check, fail-fast calls
// fail at once with Unavailable saying which node answered what.
func TestNoNodeServesTheServiceFailsClearly(t *testing.T) {
	f := newFleet(t)
	a := f.add("a", "", nil)
	a.health.SetServingStatus("greeter", healthpb.HealthCheckResponse_NOT_SERVING)
	c := f.client()
	eventually(t, "a clear Unavailable", func() bool {
		_, err := c.Hello(ctx(t), &pb.Request{})
		return status.Code(err) == codes.Unavailable && strings.Contains(err.Error(), "NOT_SERVING") &&
			strings.Contains(err.Error(), `"greeter"`)
	})
}

// WithoutHealthCheck turns the service check off too.
func TestWithoutHealthCheckSkipsServiceName(t *testing.T) {
	f := newFleet(t)
	stale := f.add("stale", "", nil)
	stale.health.SetServingStatus("greeter", healthpb.HealthCheckResponse_SERVICE_UNKNOWN)
	c := f.client(randomhash.WithoutHealthCheck())
	waitAll(t, c, "stale")
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(defaultTestTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
