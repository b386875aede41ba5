package resolver

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	grpcresolver "google.golang.org/grpc/resolver"
	"google.golang.org/grpc/status"
)

// NewBuilder returns a gRPC resolver builder that resolves
// "<scheme>:///<service>" through reg. Pass it to a single channel with
// grpc.WithResolvers (preferred: no global state), or register it for the
// whole process with grpcresolver.Register.
func NewBuilder(reg Registry, opts ...BuilderOption) grpcresolver.Builder {
	o := defaultBuilderOptions(reg)
	for _, opt := range opts {
		opt(&o)
	}
	return &builder{reg: reg, opts: o}
}

type builder struct {
	reg  Registry
	opts builderOptions
}

var _ grpcresolver.Builder = (*builder)(nil)

func (b *builder) Scheme() string { return b.opts.scheme }

// ServiceFromTarget returns the service name of a "<scheme>:///<service>"
// target, or an InvalidArgument status error when the target does not name
// exactly one valid service.
func ServiceFromTarget(t grpcresolver.Target) (string, error) {
	name := strings.TrimPrefix(t.Endpoint(), "/")
	if err := ValidateName(name); err != nil {
		return "", status.Errorf(codes.InvalidArgument, "resolver: target %q: %v", t.String(), err)
	}
	return name, nil
}

func (b *builder) Build(t grpcresolver.Target, cc grpcresolver.ClientConn, _ grpcresolver.BuildOptions) (grpcresolver.Resolver, error) {
	name, err := ServiceFromTarget(t)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &registryResolver{
		reg:     b.reg,
		opts:    b.opts,
		service: name,
		cc:      cc,
		cancel:  cancel,
		now:     make(chan struct{}, 1),
	}
	r.wg.Add(1)
	go r.run(ctx)
	return r, nil
}

// registryResolver follows one service in a Registry. All its state is owned
// by the run goroutine; ResolveNow and Close only signal it.
type registryResolver struct {
	reg     Registry
	opts    builderOptions
	service string
	cc      grpcresolver.ClientConn
	cancel  context.CancelFunc
	now     chan struct{}
	// wg tracks run (and the watch reader it starts), so that Close never
	// returns while a goroutine can still call cc, which grpc-go forbids.
	wg sync.WaitGroup
}

// ResolveNow asks for an immediate retry when the registry is failing; while
// the watch is healthy it has nothing to do, since changes are pushed.
func (r *registryResolver) ResolveNow(grpcresolver.ResolveNowOptions) {
	select {
	case r.now <- struct{}{}:
	default:
	}
}

func (r *registryResolver) Close() {
	r.cancel()
	r.wg.Wait()
}

// runState is the run goroutine's private state.
type runState struct {
	nodes map[string]nodeEntry
	// pushed is true while the channel holds a non-empty node list from us.
	pushed bool
	// degradeTimer runs while the registry fails or the list is empty;
	// when it fires, degradeWhy is reported.
	degradeTimer *time.Timer
	degradeWhy   error
	// reported is true once an error has been reported to the channel.
	reported bool
}

// sameEntries reports whether a and b hold the same nodes in the same state.
func sameEntries(a, b map[string]nodeEntry) bool {
	return maps.EqualFunc(a, b, func(x, y nodeEntry) bool {
		return x.version == y.version && maps.Equal(x.svcMeta, y.svcMeta) && x.node.ID == y.node.ID &&
			x.node.Address == y.node.Address && x.node.HealthService == y.node.HealthService && maps.Equal(x.node.Metadata, y.node.Metadata)
	})
}

// run follows the service and turns what the Follower sees into channel
// state: node lists (a listing at once, a burst of events coalesced into
// one update) and, after the grace period, errors.
func (r *registryResolver) run(ctx context.Context) {
	defer r.wg.Done()
	f := Follow(r.reg, r.service, WithBackoff(r.opts.minBackoff, r.opts.maxBackoff), WithLogger(r.opts.logger))
	defer f.Stop()
	st := &runState{nodes: map[string]nodeEntry{}}
	defer st.stopDegradeTimer()
	listings := 0
	var coalesce *time.Timer
	var coalesceC <-chan time.Time
	defer func() {
		if coalesce != nil {
			coalesce.Stop()
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case <-f.Changed():
			if err := f.Err(); err != nil {
				r.degrade(st, fmt.Errorf("registry %s failed while resolving service %q: %w", r.reg, r.service, err))
				continue
			}
			nodes, n := f.snapshot()
			if n == listings && st.pushed && st.degradeTimer == nil && sameEntries(nodes, st.nodes) {
				continue // changes that cancelled out (a node gone and back)
			}
			st.nodes = nodes
			if n != listings || r.opts.coalesce <= 0 {
				// A (re)listing is pushed at once: it ends a wait.
				listings = n
				r.publish(st)
				continue
			}
			if coalesceC == nil {
				coalesce = time.NewTimer(r.opts.coalesce)
				coalesceC = coalesce.C
			}
		case <-coalesceC:
			coalesceC = nil
			r.publish(st)
		case <-r.now:
			f.RetryNow()
		case <-st.degradeC():
			r.giveUp(st)
		}
	}
}

func (st *runState) degradeC() <-chan time.Time {
	if st.degradeTimer == nil {
		return nil
	}
	return st.degradeTimer.C
}

func (st *runState) stopDegradeTimer() {
	if st.degradeTimer != nil {
		st.degradeTimer.Stop()
		st.degradeTimer = nil
	}
	st.degradeWhy = nil
}

// publish pushes the current node list, or starts the grace period when it
// is empty.
func (r *registryResolver) publish(st *runState) {
	if len(st.nodes) == 0 {
		r.degrade(st, fmt.Errorf("no nodes of service %q are registered in registry %s", r.service, r.reg))
		return
	}
	st.stopDegradeTimer()
	state := r.state(st)
	st.pushed = true
	if err := r.cc.UpdateState(state); err != nil {
		r.opts.logger.Warn("microgrpc resolver: channel rejected the node list", "service", r.service, "error", err)
	}
}

// degrade starts the grace period for why, or reports it at once when there
// is no good list to keep or no grace period.
func (r *registryResolver) degrade(st *runState, why error) {
	st.degradeWhy = why
	wait := r.opts.grace
	if !st.pushed {
		// Nothing to keep. Before the first report, wait a little anyway:
		// discovery (mdns above all) may need a moment to find the first
		// nodes, and calls block rather than fail until we report.
		wait = 0
		if !st.reported {
			wait = r.opts.initial
		}
	}
	if wait <= 0 {
		r.giveUp(st)
		return
	}
	if st.degradeTimer == nil {
		st.degradeTimer = time.NewTimer(wait)
	}
}

// giveUp reports st.degradeWhy to the channel. When the reason is an empty
// node list the list is dropped too; a failing registry only reports, and
// the balancer keeps using connections it already has, so a registry outage
// does not take down a fleet that is still serving.
func (r *registryResolver) giveUp(st *runState) {
	why := st.degradeWhy
	if st.degradeTimer != nil {
		st.degradeTimer.Stop()
		st.degradeTimer = nil
	}
	if why == nil {
		return
	}
	if len(st.nodes) == 0 && st.pushed {
		st.pushed = false
		_ = r.cc.UpdateState(grpcresolver.State{})
	}
	if st.pushed {
		why = fmt.Errorf("%w (still using the %d nodes known before)", why, len(st.nodes))
	}
	st.reported = true
	r.cc.ReportError(why)
}

// state converts the node map to a resolver state: one endpoint per node,
// sorted by node id, and the same addresses in the legacy Addresses field.
func (r *registryResolver) state(st *runState) grpcresolver.State {
	ids := slices.Sorted(maps.Keys(st.nodes))
	eps := make([]grpcresolver.Endpoint, 0, len(ids))
	addrs := make([]grpcresolver.Address, 0, len(ids))
	for _, id := range ids {
		e := st.nodes[id]
		info := &NodeInfo{ID: id, Service: r.service, Version: e.version, Metadata: mergeMeta(e.svcMeta, e.node.Metadata), HealthService: e.node.HealthService}
		addr := grpcresolver.Address{Addr: e.node.Address}
		addr = SetHealthCheck(addr, HealthCheck{NodeID: id, Service: e.node.HealthService})
		//lint:ignore SA1019 for balancer/base policies, which see only State.Addresses (see NodeFromAddress).
		addr.BalancerAttributes = addr.BalancerAttributes.WithValue(nodeInfoKey{}, info)
		eps = append(eps, SetNodeInfo(grpcresolver.Endpoint{Addresses: []grpcresolver.Address{addr}}, info))
		addrs = append(addrs, addr)
	}
	return grpcresolver.State{Endpoints: eps, Addresses: addrs}
}

func mergeMeta(svc, node map[string]string) map[string]string {
	if len(svc) == 0 {
		return node
	}
	m := maps.Clone(svc)
	maps.Copy(m, node)
	return m
}
