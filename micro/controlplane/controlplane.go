package controlplane

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	clusterservice "github.com/envoyproxy/go-control-plane/envoy/service/cluster/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	endpointservice "github.com/envoyproxy/go-control-plane/envoy/service/endpoint/v3"
	listenerservice "github.com/envoyproxy/go-control-plane/envoy/service/listener/v3"
	routeservice "github.com/envoyproxy/go-control-plane/envoy/service/route/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/envoyproxy/go-control-plane/pkg/server/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/microgrpc/microgrpc/resolver"
)

// ErrClosed is returned by [ControlPlane.Serve] after [ControlPlane.Close].
var ErrClosed = errors.New("controlplane: closed")

// The resource types served, in the order a client needs them.
var typeURLs = []string{resource.ListenerType, resource.RouteType, resource.ClusterType, resource.EndpointType}

// ControlPlane serves the services of a registry to xDS clients. Make one
// with [New] and end it with Close, or its goroutines leak. Its methods
// are safe for concurrent use.
type ControlPlane struct {
	reg    resolver.Registry
	opts   options
	caches map[string]*cache.LinearCache // by type URL
	xds    server.Server
	ctx    context.Context
	cancel context.CancelFunc
	// wg tracks the registry loop, the services' publishers and the health
	// checks: Close returns when none of them runs any more.
	wg     sync.WaitGroup
	listed chan struct{} // closed after the first listing of services

	mu       sync.Mutex // guards what follows; never held while publishing
	services map[string]*followed
	servers  []*grpc.Server
	closed   bool
}

// followed is one service of the registry.
type followed struct {
	name   string
	f      *resolver.Follower
	health *healthChecks // nil without WithHealthCheck

	pubMu sync.Mutex // serializes publish
	last  resources
}

// New returns a control plane that follows every service of reg: it lists
// the services, watches for new ones, and follows each. It starts at once;
// serve it with Serve or Register.
func New(reg resolver.Registry, opts ...Option) (*ControlPlane, error) {
	if reg == nil {
		return nil, fmt.Errorf("%w: nil registry", ErrInvalidOption)
	}
	o := defaultOptions()
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cp := &ControlPlane{
		reg: reg, opts: o, ctx: ctx, cancel: cancel,
		caches:   map[string]*cache.LinearCache{},
		listed:   make(chan struct{}),
		services: map[string]*followed{},
	}
	// A version prefix of its own per run: a client that reconnects after a
	// restart holds versions of the previous run, which must not look current.
	prefix := strconv.FormatInt(time.Now().UnixNano(), 36) + "-"
	mux := &cache.MuxCache{
		Classify:      func(r *cache.Request) string { return r.GetTypeUrl() },
		ClassifyDelta: func(r *cache.DeltaRequest) string { return r.GetTypeUrl() },
		Caches:        map[string]cache.Cache{},
	}
	for _, t := range typeURLs {
		c := cache.NewLinearCache(t, cache.WithVersionPrefix(prefix))
		cp.caches[t] = c
		mux.Caches[t] = c
	}
	cp.xds = server.NewServer(ctx, mux, server.CallbackFuncs{
		StreamRequestFunc: func(id int64, req *discovery.DiscoveryRequest) error {
			return cp.checkRequest(id, req.GetTypeUrl(), req.GetNode().GetId(), req.GetErrorDetail())
		},
		StreamDeltaRequestFunc: func(id int64, req *discovery.DeltaDiscoveryRequest) error {
			return cp.checkRequest(id, req.GetTypeUrl(), req.GetNode().GetId(), req.GetErrorDetail())
		},
	})
	cp.wg.Add(1)
	go func() {
		defer cp.wg.Done()
		cp.run()
	}()
	return cp, nil
}

// checkRequest refuses types that are not served, with a status that says
// so, and logs what a client rejected (a NACK).
func (cp *ControlPlane) checkRequest(stream int64, typeURL, node string, nack *rpcstatus.Status) error {
	if _, ok := cp.caches[typeURL]; !ok {
		return status.Errorf(codes.InvalidArgument,
			"controlplane: type %q is not served; this control plane serves listeners, routes, clusters and endpoints (v3)", typeURL)
	}
	if nack != nil {
		cp.opts.logger.Warn("microgrpc: an xDS client rejected the configuration (NACK)",
			"node", node, "stream", stream, "type", typeURL, "code", codes.Code(nack.GetCode()), "error", nack.GetMessage())
	}
	return nil
}

// Register registers the aggregated discovery service (state of the world
// and incremental), and the per-type services, on gs: for a program that
// serves the control plane on a gRPC server of its own.
func (cp *ControlPlane) Register(gs grpc.ServiceRegistrar) {
	discovery.RegisterAggregatedDiscoveryServiceServer(gs, cp.xds)
	listenerservice.RegisterListenerDiscoveryServiceServer(gs, cp.xds)
	routeservice.RegisterRouteDiscoveryServiceServer(gs, cp.xds)
	clusterservice.RegisterClusterDiscoveryServiceServer(gs, cp.xds)
	endpointservice.RegisterEndpointDiscoveryServiceServer(gs, cp.xds)
}

// Serve waits (WithReadyTimeout) until the registry has been listed, so
// that a restarted control plane does not tell clients that their services
// are gone, then serves xDS on lis with the options of WithServerOptions,
// until Close. It returns ErrClosed after Close, or the error that ended
// serving.
func (cp *ControlPlane) Serve(lis net.Listener) error {
	gs := grpc.NewServer(cp.opts.serverOptions...)
	cp.Register(gs)
	cp.mu.Lock()
	if cp.closed {
		cp.mu.Unlock()
		lis.Close()
		return ErrClosed
	}
	cp.servers = append(cp.servers, gs)
	cp.mu.Unlock()
	ctx, cancel := context.WithTimeout(cp.ctx, cp.opts.readyTimeout)
	err := cp.Ready(ctx)
	cancel()
	if err != nil && cp.ctx.Err() == nil {
		cp.opts.logger.Warn("microgrpc: control plane serves before the registry was listed", "error", err)
	}
	err = gs.Serve(lis)
	if cp.ctx.Err() != nil {
		return ErrClosed
	}
	return err
}

// Ready waits until the registry's services have been listed and each has
// been followed and published once, and returns nil, or the registry's
// error, or ctx's.
func (cp *ControlPlane) Ready(ctx context.Context) error {
	select {
	case <-cp.listed:
	case <-ctx.Done():
		return fmt.Errorf("controlplane: waiting for the registry's services: %w", ctx.Err())
	}
	cp.mu.Lock()
	var fs []*followed
	for _, s := range cp.services {
		fs = append(fs, s)
	}
	cp.mu.Unlock()
	var errs []error
	for _, s := range fs {
		if err := s.f.Ready(ctx); err != nil {
			errs = append(errs, fmt.Errorf("service %q: %w", s.name, err))
			continue
		}
		cp.publish(s)
	}
	return errors.Join(errs...)
}

// Close stops serving (ending every xDS stream), stops following the
// registry and waits for the goroutines. It is idempotent.
func (cp *ControlPlane) Close() {
	cp.mu.Lock()
	cp.closed = true
	servers := cp.servers
	cp.servers = nil
	cp.mu.Unlock()
	cp.cancel()
	for _, gs := range servers {
		gs.Stop()
	}
	cp.wg.Wait()
	cp.mu.Lock()
	defer cp.mu.Unlock()
	for _, s := range cp.services {
		s.f.Stop()
	}
}

// publish puts the current resources of s into the caches, those that
// changed only, so that clients hear of what changed and of nothing else.
func (cp *ControlPlane) publish(s *followed) {
	s.pubMu.Lock()
	defer s.pubMu.Unlock()
	versions := s.f.Services()
	var unhealthy nodeHealth
	if s.health != nil {
		var nodes []resolver.Node
		for _, v := range versions {
			nodes = append(nodes, v.Nodes...)
		}
		s.health.sync(nodes)
		unhealthy = s.health.unhealthy
	}
	r := cp.build(s.name, versions, unhealthy)
	pairs := [][2]map[string]types.Resource{
		{s.last.listeners, r.listeners}, {s.last.routes, r.routes},
		{s.last.clusters, r.clusters}, {s.last.assignments, r.assignments},
	}
	// Make before break: what is new or changed goes in from the
	// assignments up, so that a route never names a cluster a client
	// cannot have yet; what is gone comes out from the listeners down.
	for i := len(pairs) - 1; i >= 0; i-- {
		update := map[string]types.Resource{}
		for name, res := range pairs[i][1] {
			if o, ok := pairs[i][0][name]; !ok || !proto.Equal(o, res) {
				update[name] = res
			}
		}
		cp.update(s.name, typeURLs[i], update, nil)
	}
	for i, p := range pairs {
		var remove []string
		for name := range p[0] {
			if _, ok := p[1][name]; !ok {
				remove = append(remove, name)
			}
		}
		cp.update(s.name, typeURLs[i], nil, remove)
	}
	s.last = r
}

func (cp *ControlPlane) update(service, typeURL string, update map[string]types.Resource, remove []string) {
	if len(update) == 0 && len(remove) == 0 {
		return
	}
	if err := cp.caches[typeURL].UpdateResources(update, remove); err != nil {
		cp.opts.logger.Error("microgrpc: control plane could not update its cache", "service", service, "type", typeURL, "error", err)
	}
}

// goLive runs f on a goroutine that Close waits for, unless the control
// plane is closed; it reports whether f runs. Adding to wg under mu, after
// checking closed, orders every Add before the Wait of Close.
func (cp *ControlPlane) goLive(f func()) bool {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	if cp.closed {
		return false
	}
	cp.wg.Add(1)
	go func() {
		defer cp.wg.Done()
		f()
	}()
	return true
}
