package controlplane_test

import (
	"context"
	"fmt"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"

	"github.com/microgrpc/microgrpc/micro/controlplane"
	pb "github.com/microgrpc/microgrpc/proto/greeter"
	"github.com/microgrpc/microgrpc/resolver"
	"github.com/microgrpc/microgrpc/resolver/memory"
)

// adsStream opens a raw ADS stream to addr, for requests no well-behaved
// client sends.
func adsStream(t *testing.T, ctx context.Context, addr string) discovery.AggregatedDiscoveryService_StreamAggregatedResourcesClient {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	s, err := discovery.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// endpointsOf decodes the node ids of a CLA response.
func endpointsOf(t *testing.T, rsp *discovery.DiscoveryResponse) []string {
	t.Helper()
	var ids []string
	for _, a := range rsp.GetResources() {
		var cla endpointv3.ClusterLoadAssignment
		if err := a.UnmarshalTo(&cla); err != nil {
			t.Fatal(err)
		}
		for _, l := range cla.GetEndpoints() {
			for _, e := range l.GetLbEndpoints() {
				ids = append(ids, e.GetEndpoint().GetHostname())
			}
		}
	}
	return ids
}

// rawCodec sends bytes as they are, under the proto content-subtype: a
// malformed request.
type rawCodec struct{}

func (rawCodec) Name() string { return "proto" }
func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(v.([]byte))}, nil
}
func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	*(v.(*[]byte)) = data.Materialize()
	return nil
}

// Bad input gets a clear answer, and the control plane keeps serving: a
// NACK, an unknown resource name, an unknown or missing type, a malformed
// request, and a thousand clients at once.
func TestBadInput(t *testing.T) {
	reg := memory.NewRegistry()
	startInprocNode(t, reg, "n1", "", nil)
	cp := newControlPlane(t, reg)
	addr := serveControlPlane(t, cp)
	testCtx := func(t *testing.T, d time.Duration) context.Context {
		ctx, cancel := context.WithTimeout(context.Background(), d)
		t.Cleanup(cancel)
		return ctx
	}

	t.Run("NACK", func(t *testing.T) {
		ctx := testCtx(t, defaultTestTimeout)
		s := adsStream(t, ctx, addr)
		req := &discovery.DiscoveryRequest{TypeUrl: resource.EndpointType, ResourceNames: []string{"greeter"}}
		if err := s.Send(req); err != nil {
			t.Fatal(err)
		}
		rsp, err := s.Recv()
		if err != nil {
			t.Fatal(err)
		}
		// Reject it, keeping no version: as a client whose validation failed.
		req.ResponseNonce = rsp.GetNonce()
		req.ErrorDetail = &spb.Status{Code: int32(codes.InvalidArgument), Message: "rejected by the test"}
		if err := s.Send(req); err != nil {
			t.Fatal(err)
		}
		// The stream lives on: the next change of the registry arrives.
		startInprocNode(t, reg, "n2", "", nil)
		for {
			rsp, err := s.Recv()
			if err != nil {
				t.Fatalf("after a NACK: %v", err)
			}
			if ids := endpointsOf(t, rsp); len(ids) == 2 {
				break
			}
			// Accept what came, as a client does, to hear of the next change.
			ack := &discovery.DiscoveryRequest{TypeUrl: resource.EndpointType, ResourceNames: []string{"greeter"},
				VersionInfo: rsp.GetVersionInfo(), ResponseNonce: rsp.GetNonce()}
			if err := s.Send(ack); err != nil {
				t.Fatal(err)
			}
		}
	})

	t.Run("unknown resource name", func(t *testing.T) {
		ctx := testCtx(t, defaultTestTimeout)
		s := adsStream(t, ctx, addr)
		if err := s.Send(&discovery.DiscoveryRequest{TypeUrl: resource.ListenerType, ResourceNames: []string{"nosuch"}}); err != nil {
			t.Fatal(err)
		}
		rsp, err := s.Recv()
		if err != nil {
			t.Fatal(err)
		}
		// State of the world: a listener left out of the answer does not exist.
		if len(rsp.GetResources()) != 0 || rsp.GetNonce() == "" {
			t.Fatalf("for an unknown listener: %d resources, nonce %q; want none, with a nonce", len(rsp.GetResources()), rsp.GetNonce())
		}
		// And grpc-go's client fails the call (after its does-not-exist
		// timer, 15 s: the bootstrap asks it to ignore deletions).
		conn := xdsConn(t, addr, "nosuch")
		_, err = pb.NewGreeterClient(conn).Hello(ctx, &pb.Request{Name: "x"})
		if status.Code(err) != codes.Unavailable {
			t.Fatalf("call to xds:///nosuch: %v, want UNAVAILABLE", err)
		}
		t.Logf("call to xds:///nosuch: %v", err)
	})

	t.Run("bad type", func(t *testing.T) {
		ctx := testCtx(t, defaultTestTimeout)
		for _, typeURL := range []string{"type.googleapis.com/no.such.Type", ""} {
			s := adsStream(t, ctx, addr)
			if err := s.Send(&discovery.DiscoveryRequest{TypeUrl: typeURL}); err != nil {
				t.Fatal(err)
			}
			_, err := s.Recv()
			if status.Code(err) != codes.InvalidArgument {
				t.Errorf("type %q: %v, want INVALID_ARGUMENT", typeURL, err)
			}
			t.Logf("type %q: %v", typeURL, err)
		}
	})

	t.Run("malformed request", func(t *testing.T) {
		ctx := testCtx(t, defaultTestTimeout)
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		desc := &grpc.StreamDesc{ClientStreams: true, ServerStreams: true}
		s, err := conn.NewStream(ctx, desc, "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources", grpc.ForceCodecV2(rawCodec{}))
		if err != nil {
			t.Fatal(err)
		}
		if err := s.SendMsg([]byte{0xff, 0xff, 0xff, 0x01, 0x02}); err != nil {
			t.Fatal(err)
		}
		var out []byte
		err = s.RecvMsg(&out)
		if code := status.Code(err); code != codes.Internal && code != codes.InvalidArgument {
			t.Fatalf("malformed request: %v, want INTERNAL or INVALID_ARGUMENT", err)
		}
		t.Logf("malformed request: %v", err)
	})

	t.Run("a thousand clients at once", func(t *testing.T) {
		const clients = 1000
		ctx := testCtx(t, 2*time.Minute)
		var wg sync.WaitGroup
		errs := make(chan error, clients)
		start := time.Now()
		for i := range clients {
			wg.Go(func() {
				conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
				if err != nil {
					errs <- err
					return
				}
				defer conn.Close()
				// As xDS clients do, retry a connection that failed to set
				// up (on a loaded machine, some exceed the connect timeout).
				s, err := discovery.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx, grpc.WaitForReady(true))
				if err == nil {
					err = s.Send(&discovery.DiscoveryRequest{TypeUrl: resource.EndpointType, ResourceNames: []string{"greeter"}})
				}
				var rsp *discovery.DiscoveryResponse
				if err == nil {
					rsp, err = s.Recv()
				}
				if err == nil && len(rsp.GetResources()) != 1 {
					err = fmt.Errorf("client %d: %d assignments, want 1", i, len(rsp.GetResources()))
				}
				if err != nil {
					errs <- err
				}
			})
		}
		wg.Wait()
		close(errs)
		n := 0
		for err := range errs {
			if n++; n <= 3 {
				t.Errorf("%v", err)
			}
		}
		t.Logf("%d clients served in %v, %d failed", clients, time.Since(start).Round(time.Millisecond), n)
	})

	// Through all of it, a well-behaved client is served.
	ctx := testCtx(t, defaultTestTimeout)
	conn := xdsConn(t, addr, "greeter")
	if _, err := pb.NewGreeterClient(conn).Hello(ctx, &pb.Request{Name: "x"}); err != nil {
		t.Fatalf("a call after the bad input: %v", err)
	}
}

// A control plane restarted on the same address while clients call: no
// call fails (clients keep what they have), and once it is back they
// hear of changes again.
func TestRestartMidLoad(t *testing.T) {
	reg := memory.NewRegistry()
	startInprocNode(t, reg, "n1", "", nil)
	startInprocNode(t, reg, "n2", "", nil)
	cp1, err := controlplane.New(reg, controlplane.WithLogger(testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	served := make(chan error, 1)
	go func() { served <- cp1.Serve(lis) }()
	conn := xdsConn(t, addr, "greeter")
	t0 := time.Now()
	l := startLoad(t, conn, 4)
	waitFor(t, defaultTestTimeout, "both nodes answer", func() bool {
		a := answered(l.since(t0))
		return a["n1"] > 0 && a["n2"] > 0
	})
	cp1.Close()
	<-served
	time.Sleep(500 * time.Millisecond) // calls go on without it
	down := time.Now()
	startInprocNode(t, reg, "n3", "", nil)

	lis2, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen again on %s: %v", addr, err)
	}
	cp2 := newControlPlane(t, reg)
	go func() { served <- cp2.Serve(lis2) }()
	t.Cleanup(func() { cp2.Close(); <-served })
	back := waitFor(t, defaultTestTimeout, "the node added while it was down gets calls", func() bool { return answered(l.since(down))["n3"] > 0 })
	t.Logf("node added while the control plane was down: calls %v after the restart", back.Round(time.Millisecond))
	l.end()
	if f := failures(l.outcomes); len(f) > 0 {
		t.Errorf("%d calls failed around the restart: %v", len(f), f)
	}
	if a := answered(l.since(down)); a["n1"] == 0 || a["n2"] == 0 {
		t.Errorf("after the restart, answers %v: want n1 and n2 to keep answering", a)
	}
}

// Incremental xDS (delta): a subscriber gets the assignment, then only
// what changes, and hears of a removed resource by name.
func TestIncremental(t *testing.T) {
	reg := memory.NewRegistry()
	startInprocNode(t, reg, "n1", "v1", nil)
	cp := newControlPlane(t, reg)
	addr := serveControlPlane(t, cp)
	ctx, cancel := context.WithTimeout(context.Background(), defaultTestTimeout)
	defer cancel()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	s, err := discovery.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	recv := func() *discovery.DeltaDiscoveryResponse {
		t.Helper()
		rsp, err := s.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Send(&discovery.DeltaDiscoveryRequest{TypeUrl: resource.EndpointType, ResponseNonce: rsp.GetNonce()}); err != nil {
			t.Fatal(err)
		}
		return rsp
	}
	v1 := controlplane.VersionCluster("greeter", "v1")
	if err := s.Send(&discovery.DeltaDiscoveryRequest{TypeUrl: resource.EndpointType, ResourceNamesSubscribe: []string{"greeter", v1}}); err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for len(got) < 2 {
		for _, r := range recv().GetResources() {
			got[r.GetName()] = true
		}
	}
	// The v1 node leaves: its version's assignment is removed by name.
	if err := reg.Deregister(ctx, &resolver.Service{Name: "greeter", Version: "v1", Nodes: []resolver.Node{{ID: "n1", Address: "x"}}}); err != nil {
		t.Fatal(err)
	}
	for {
		rsp := recv()
		if slices.Contains(rsp.GetRemovedResources(), v1) {
			break
		}
	}
}
