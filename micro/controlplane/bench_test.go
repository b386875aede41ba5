package controlplane_test

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"runtime"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/microgrpc/microgrpc/micro/controlplane"
	"github.com/microgrpc/microgrpc/resolver"
	"github.com/microgrpc/microgrpc/resolver/memory"
)

// change is one registry change the watchers wait for: node in service
// is present (added) or absent (removed).
type change struct {
	service, node string
	present       bool
	reached       int // watchers that have it
	done          chan struct{}
}

// watchers are xDS clients (raw ADS streams, as a proxyless client
// holds) that subscribe to the assignments of every service and ACK each
// response.
type watchers struct {
	mu      sync.Mutex
	current *change
	n       int
}

// saw is called by a watcher with the nodes of one assignment it holds.
// Caller must not hold w.mu.
func (w *watchers) saw(seen map[*change]bool, service string, nodes map[string]bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	c := w.current
	if c == nil || c.service != service || seen[c] || nodes[c.node] != c.present {
		return
	}
	seen[c] = true
	if c.reached++; c.reached == w.n {
		close(c.done)
	}
}

func (w *watchers) watch(ctx context.Context, b *testing.B, addr string, names []string, ready *sync.WaitGroup) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Error(err)
		ready.Done()
		return
	}
	defer conn.Close()
	s, err := discovery.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx, grpc.WaitForReady(true))
	if err != nil {
		b.Error(err)
		ready.Done()
		return
	}
	req := &discovery.DiscoveryRequest{TypeUrl: resource.EndpointType, ResourceNames: names}
	if err := s.Send(req); err != nil {
		b.Error(err)
		ready.Done()
		return
	}
	seen := map[*change]bool{}
	held := map[string]bool{}
	first := true
	for {
		rsp, err := s.Recv()
		if err != nil {
			if first {
				ready.Done()
			}
			return // the benchmark ended
		}
		for _, a := range rsp.GetResources() {
			var cla endpointv3.ClusterLoadAssignment
			if err := a.UnmarshalTo(&cla); err != nil {
				b.Error(err)
				continue
			}
			nodes := map[string]bool{}
			for _, l := range cla.GetEndpoints() {
				for _, e := range l.GetLbEndpoints() {
					nodes[e.GetEndpoint().GetHostname()] = true
				}
			}
			held[cla.GetClusterName()] = true
			w.saw(seen, cla.GetClusterName(), nodes)
		}
		if first && len(held) == len(names) {
			first = false
			ready.Done()
		}
		req.VersionInfo, req.ResponseNonce = rsp.GetVersionInfo(), rsp.GetNonce()
		if err := s.Send(req); err != nil {
			return
		}
	}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkPropagation measures, per registry change (a node added to or
// removed from one service, alternately), the time until every watching
// xDS client has the new assignment: p50 and p99 over b.N changes (run
// with -benchtime=100x), the process's CPU per change (control plane and
// clients together: they share the process) and the heap.
//
//	go test -run '^$' -bench Propagation -benchtime=100x ./micro/controlplane/
func BenchmarkPropagation(b *testing.B) {
	for _, c := range []struct{ services, nodes, clients int }{
		{50, 1000, 100}, {50, 1000, 300}, {50, 5000, 100},
	} {
		for _, engine := range []string{"controlplane", "raw"} {
			b.Run(fmt.Sprintf("services=%d/nodes=%d/clients=%d/%s", c.services, c.nodes, c.clients, engine), func(b *testing.B) {
				benchPropagation(b, c.services, c.nodes, c.clients, engine == "raw")
			})
		}
	}
}

// rawEngine is the baseline: go-control-plane's linear cache and server
// alone, the assignments set straight into the cache, no registry.
type rawEngine struct {
	cache *cache.LinearCache
	nodes map[string][]string // by service
}

func (r *rawEngine) set(service string) {
	cla := &endpointv3.ClusterLoadAssignment{ClusterName: service}
	loc := &endpointv3.LocalityLbEndpoints{LoadBalancingWeight: wrapperspb.UInt32(1)}
	for i, id := range r.nodes[service] {
		loc.LbEndpoints = append(loc.LbEndpoints, &endpointv3.LbEndpoint{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
			Hostname: id,
			Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
				Address: "127.0.0.1", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(10000 + i)},
			}}},
		}}})
	}
	cla.Endpoints = []*endpointv3.LocalityLbEndpoints{loc}
	r.cache.UpdateResource(service, cla)
}

func benchPropagation(b *testing.B, services, nodes, clients int, raw bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	reg := memory.NewRegistry()
	var names []string
	for s := range services {
		name := fmt.Sprintf("svc%02d", s)
		names = append(names, name)
		for n := range nodes / services {
			if err := reg.Register(ctx, &resolver.Service{Name: name, Nodes: []resolver.Node{{
				ID: fmt.Sprintf("%s-n%d", name, n), Address: fmt.Sprintf("127.0.0.1:%d", 10000+n),
				Metadata: map[string]string{"zone": fmt.Sprintf("z%d", n%3)},
			}}}); err != nil {
				b.Fatal(err)
			}
		}
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	addr := lis.Addr().String()
	served := make(chan error, 1)
	var stop func()
	var re *rawEngine
	if raw {
		re = &rawEngine{cache: cache.NewLinearCache(resource.EndpointType), nodes: map[string][]string{}}
		for _, name := range names {
			for n := range nodes / services {
				re.nodes[name] = append(re.nodes[name], fmt.Sprintf("%s-n%d", name, n))
			}
			re.set(name)
		}
		sctx, scancel := context.WithCancel(ctx)
		gs := grpc.NewServer()
		discovery.RegisterAggregatedDiscoveryServiceServer(gs, server.NewServer(sctx, re.cache, nil))
		go func() { served <- gs.Serve(lis) }()
		stop = func() { scancel(); gs.Stop() }
	} else {
		cp, err := controlplane.New(reg, controlplane.WithLogger(slog.New(slog.DiscardHandler)))
		if err != nil {
			b.Fatal(err)
		}
		go func() { served <- cp.Serve(lis) }()
		stop = cp.Close
	}
	w := &watchers{n: clients}
	var ready, running sync.WaitGroup
	wctx, wcancel := context.WithCancel(ctx)
	for range clients {
		ready.Add(1)
		running.Go(func() { w.watch(wctx, b, addr, names, &ready) })
	}
	ready.Wait()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)

	var lat []time.Duration
	cpu0 := cpuTime()
	b.ResetTimer()
	for i := range b.N {
		svc := names[rand.IntN(len(names))]
		node := resolver.Node{ID: fmt.Sprintf("%s-extra%d", svc, i/2), Address: "127.0.0.1:9"}
		c := &change{service: svc, node: node.ID, present: i%2 == 0, done: make(chan struct{})}
		if !c.present {
			c.service = w.current.service // remove the node the last change added
			node.ID = w.current.node
			c.node = node.ID
		}
		w.mu.Lock()
		w.current = c
		w.mu.Unlock()
		start := time.Now()
		var err error
		switch {
		case raw && c.present:
			re.nodes[c.service] = append(re.nodes[c.service], node.ID)
			re.set(c.service)
		case raw:
			re.nodes[c.service] = slices.DeleteFunc(re.nodes[c.service], func(id string) bool { return id == node.ID })
			re.set(c.service)
		case c.present:
			err = reg.Register(ctx, &resolver.Service{Name: c.service, Nodes: []resolver.Node{node}})
		default:
			err = reg.Deregister(ctx, &resolver.Service{Name: c.service, Nodes: []resolver.Node{node}})
		}
		if err != nil {
			b.Fatal(err)
		}
		select {
		case <-c.done:
		case <-ctx.Done():
			b.Fatalf("change %d: %d of %d clients had it", i, c.reached, clients)
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	cpu := cpuTime() - cpu0
	slices.Sort(lat)
	pct := func(p float64) float64 {
		return float64(lat[min(len(lat)-1, int(float64(len(lat))*p))].Microseconds()) / 1000
	}
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(float64(cpu.Microseconds())/1000/float64(b.N), "cpu-ms/change")
	b.ReportMetric(float64(ms.HeapInuse)/(1<<20), "heap-MB")
	b.ReportMetric(0, "ns/op")
	wcancel()
	running.Wait()
	stop()
	<-served
}
