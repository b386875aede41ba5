// Package randomhash is go-micro's selector as a gRPC load-balancing
// policy, registered under [Name] ("random_hash"): each call goes to a node
// chosen uniformly at random among the READY ones, or by rendezvous hash of
// a key ([WithHashKey]); a retry avoids the nodes that already failed the
// call; a node that keeps failing with UNAVAILABLE is ejected for a growing
// cool-down; and calls can be restricted to nodes of a version or with a
// metadata label ([FilterVersion], [FilterMetadata]).
//
// # Using it
//
// micro services use it by default. A plain grpc-go client passes
// [DialOptions] (the service config and two interceptors):
//
//	cc, err := grpc.NewClient("etcd:///greeter", append(randomhash.DialOptions(),
//		grpc.WithTransportCredentials(insecure.NewCredentials()))...)
//
// [DefaultServiceConfig] alone selects the policy, the retry policy and
// client-side health checking; without the interceptors, retries may land
// on a node that already failed the call and call options are ignored.
//
// # How it is built
//
// It is an endpointsharding balancer with a pickfirst child per endpoint
// (one endpoint per registry node), as grpc-go's own round_robin. Node
// identity, version and metadata come from the endpoint attributes set by
// package resolver ([resolver.NodeFromEndpoint]); endpoints without them
// (another resolver) are identified by address and match no filter.
//
// Retries are grpc-go's own, from the service config's retryPolicy, so they
// honour retry throttling; do not also add a retrying interceptor, or
// attempts multiply.
package randomhash

import (
	"encoding/json"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/balancer"
	"google.golang.org/grpc/balancer/endpointsharding"
	"google.golang.org/grpc/balancer/pickfirst"
	"google.golang.org/grpc/connectivity"
	_ "google.golang.org/grpc/health" // client-side health checking (healthCheckConfig)
	grpcresolver "google.golang.org/grpc/resolver"
	"google.golang.org/grpc/serviceconfig"

	"github.com/microgrpc/microgrpc/resolver"
)

// Name is the policy's name in service configs.
const Name = "random_hash"

func init() {
	balancer.Register(builder{})
}

type builder struct{}

var _ balancer.ConfigParser = builder{}

func (builder) Name() string { return Name }

func (builder) ParseConfig(js json.RawMessage) (serviceconfig.LoadBalancingConfig, error) {
	return parseConfig(js)
}

func (builder) Build(cc balancer.ClientConn, opts balancer.BuildOptions) balancer.Balancer {
	b := &rhBalancer{cc: cc, outliers: map[string]*outlier{}}
	b.cfg.Store(mustDefaultConfig())
	b.Balancer = endpointsharding.NewBalancer(interceptCC{ClientConn: cc, b: b}, opts,
		balancer.Get(pickfirst.Name).Build, endpointsharding.Options{})
	return b
}

func mustDefaultConfig() *lbConfig {
	c, err := parseConfig(nil)
	if err != nil {
		panic(err)
	}
	return c
}

// rhBalancer embeds the endpointsharding balancer; it only replaces the
// picker that endpointsharding publishes with its own.
type rhBalancer struct {
	balancer.Balancer
	cc  balancer.ClientConn
	cfg atomic.Pointer[lbConfig]

	// mu guards outliers. Outlier state lives here, not in pickers, so
	// that it survives picker rebuilds.
	mu       sync.Mutex
	outliers map[string]*outlier
	// ejected counts ejected nodes, so that pickers skip ejection checks
	// while it is zero.
	ejected atomic.Int32
}

func (b *rhBalancer) UpdateClientConnState(s balancer.ClientConnState) error {
	if cfg, ok := s.BalancerConfig.(*lbConfig); ok {
		b.cfg.Store(cfg)
	}
	b.pruneOutliers(s.ResolverState.Endpoints)
	return b.Balancer.UpdateClientConnState(balancer.ClientConnState{
		ResolverState: pickfirst.EnableHealthListener(s.ResolverState),
	})
}

// pruneOutliers forgets nodes that left the endpoint list.
func (b *rhBalancer) pruneOutliers(eps []grpcresolver.Endpoint) {
	keep := make(map[string]bool, len(eps))
	for _, ep := range eps {
		keep[nodeID(ep)] = true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for id, o := range b.outliers {
		if !keep[id] {
			if o.isEjected(time.Now()) {
				b.ejected.Add(-1)
			}
			delete(b.outliers, id)
		}
	}
}

func (b *rhBalancer) outlierFor(id string) *outlier {
	b.mu.Lock()
	defer b.mu.Unlock()
	o, ok := b.outliers[id]
	if !ok {
		o = &outlier{b: b}
		b.outliers[id] = o
	}
	return o
}

// interceptCC is the ClientConn endpointsharding talks to: it turns the
// endpointsharding picker into ours before passing the state up.
type interceptCC struct {
	balancer.ClientConn
	b *rhBalancer
}

func (c interceptCC) UpdateState(s balancer.State) {
	// Nothing READY: keep endpointsharding's picker, which queues calls
	// while children connect and fails them in TRANSIENT_FAILURE.
	// (endpointsharding itself wakes children that go IDLE.)
	if s.ConnectivityState == connectivity.Ready {
		s.Picker = c.b.newPicker(endpointsharding.ChildStatesFromPicker(s.Picker))
	}
	c.b.cc.UpdateState(s)
}

// nodeID identifies an endpoint: the registry node id, or its first
// address for endpoints from another resolver.
func nodeID(ep grpcresolver.Endpoint) string {
	if n := resolver.NodeFromEndpoint(ep); n != nil {
		return n.ID
	}
	if len(ep.Addresses) > 0 {
		return ep.Addresses[0].Addr
	}
	return ""
}

// outlier counts one node's consecutive UNAVAILABLE failures and its
// ejection. Every field is atomic: picks and their Done callbacks run
// concurrently and take no lock.
type outlier struct {
	b            *rhBalancer
	consecutive  atomic.Uint32
	ejections    atomic.Uint32 // ejections in a row, for the growing cool-down
	ejectedUntil atomic.Int64  // unix nanoseconds; 0 when never ejected
	counted      atomic.Bool   // whether b.ejected counts this node
}

func (o *outlier) isEjected(now time.Time) bool {
	u := o.ejectedUntil.Load()
	if u == 0 {
		return false
	}
	if now.UnixNano() < u {
		return true
	}
	if o.counted.CompareAndSwap(true, false) {
		o.b.ejected.Add(-1) // cool-down over
	}
	return false
}

func (o *outlier) success() {
	o.consecutive.Store(0)
	if o.ejectedUntil.Load() != 0 && !o.isEjected(time.Now()) {
		o.ejections.Store(0)
	}
}

func (o *outlier) failure(cfg *lbConfig) {
	if cfg.threshold == 0 {
		return
	}
	n := o.consecutive.Add(1)
	// After a first ejection a single further failure ejects again, for
	// longer: the node has not answered well since.
	if n < cfg.threshold && o.ejections.Load() == 0 {
		return
	}
	k := o.ejections.Add(1)
	d := cfg.base
	for i := uint32(1); i < k && d < cfg.max; i++ {
		d *= 2
	}
	d = min(d, cfg.max)
	o.ejectedUntil.Store(time.Now().Add(d).UnixNano())
	o.consecutive.Store(0)
	if o.counted.CompareAndSwap(false, true) {
		o.b.ejected.Add(1)
	}
}
