// Package randomhash is go-micro's selector as a gRPC load-balancing
// policy, registered under [Name] ("random_hash"): each call goes to the
// less loaded of two nodes drawn at random among the READY ones (calls in
// flight times latency, see load.go; [PickRandom] draws one, uniformly), or
// by rendezvous hash of a key ([WithHashKey]); a retry avoids the nodes that already failed the
// call; a node that keeps failing with UNAVAILABLE, or keeps missing
// deadlines while other nodes answer (a frozen process), is ejected for a
// growing cool-down; a node that answers that it lacks the called service
// (a record pointing at some other gRPC server) is ejected, and the call
// sent to another node; and calls can be restricted to nodes of a version or with a
// metadata label ([FilterVersion], [FilterMetadata]), or to one node
// ([FilterNode]).
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
// A client of a service larger than the subset size (DefaultSubsetSize,
// [WithSubsetSize]) connects to that many of its nodes, chosen at random,
// rather than to all; members that fail to connect are replaced (in
// widening rounds when most of the fleet is gone) and tried again after a
// growing backoff, a hash key still goes to the same node from every
// client (its node joins the subset), and a filter no member matches
// connects a node that does. While members cannot take calls the subset
// grows to at most twice its size, and it shrinks back once enough serve.
// See subset.go.
//
// Retries are grpc-go's own, from the service config's retryPolicy, so they
// honour retry throttling; do not also add a retrying interceptor, or
// attempts multiply.
package randomhash

import (
	"context"
	"encoding/json"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/balancer"
	"google.golang.org/grpc/balancer/base"
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

// timeNow is the clock of ejections; tests replace it to move time without
// sleeping.
var timeNow = time.Now

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
	b := &rhBalancer{cc: cc, outliers: map[string]*outlier{}, health: map[string]*nodeHealth{}, ready: map[string]readyConn{},
		adjustCh: make(chan struct{}, 1)}
	b.ctx, b.cancel = context.WithCancel(context.Background())
	b.cfg.Store(mustDefaultConfig())
	b.Balancer = endpointsharding.NewBalancer(interceptCC{ClientConn: cc, b: b}, opts,
		balancer.Get(pickfirst.Name).Build, endpointsharding.Options{})
	b.wg.Add(1)
	go b.adjuster()
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

	// mu guards outliers, health and closed. Outlier state lives here, not
	// in pickers, so that it survives picker rebuilds. Lock order: pub.mu
	// before mu.
	mu       sync.Mutex
	outliers map[string]*outlier
	health   map[string]*nodeHealth // by node id, while its SubConn is READY
	ready    map[string]readyConn   // by node id, while its SubConn is READY
	closed   bool
	// ctx ends with Close; probers (probe.go) stop on it.
	ctx    context.Context
	cancel context.CancelFunc
	// wg counts the service health watches and the probers; Close waits
	// for them, so that none touches the ClientConn after it.
	wg  sync.WaitGroup
	pub publisher
	// topMu serializes the calls into endpointsharding, gRPC's and the
	// subset adjuster's (subset.go); it guards sub and topClosed. Lock
	// order: topMu before endpointsharding's lock, before pub.mu.
	topMu     sync.Mutex
	topClosed bool
	sub       subset
	adjustCh  chan struct{} // buffer 1: the subset is to be looked at
	wantMu    sync.Mutex
	wants     map[string]bool // nodes picks asked to join the subset
	// outside is the nodes outside the subset that picks may ask for; nil
	// while subsetting is off.
	outside atomic.Pointer[[]*child]
	// ejected counts the ejected nodes of the resolver state, so that
	// pickers skip ejection checks while it is zero. Each outlier's
	// stCounted flag says whether it is counted; the counter is raised
	// before a flag is set and lowered after one is cleared, so it is never
	// below the counted nodes (never negative), and is exact once
	// concurrent reports settle.
	ejected atomic.Int32
}

func (b *rhBalancer) UpdateClientConnState(s balancer.ClientConnState) error {
	if cfg, ok := s.BalancerConfig.(*lbConfig); ok {
		b.cfg.Store(cfg)
	}
	b.pruneOutliers(s.ResolverState.Endpoints)
	b.topMu.Lock()
	defer b.topMu.Unlock()
	return b.applySubset(b.setState(balancer.ClientConnState{
		ResolverState: pickfirst.EnableHealthListener(s.ResolverState),
	}))
}

// updateChildren gives endpointsharding its endpoints. Caller holds topMu.
func (b *rhBalancer) updateChildren(s balancer.ClientConnState) error {
	if b.topClosed {
		return nil
	}
	return b.Balancer.UpdateClientConnState(s)
}

func (b *rhBalancer) ResolverError(err error) {
	b.topMu.Lock()
	defer b.topMu.Unlock()
	if !b.topClosed {
		b.Balancer.ResolverError(err)
	}
}

func (b *rhBalancer) ExitIdle() {
	b.topMu.Lock()
	defer b.topMu.Unlock()
	if !b.topClosed {
		b.Balancer.ExitIdle()
	}
}

// Close closes the children, then ends the service health watches.
func (b *rhBalancer) Close() {
	b.topMu.Lock()
	b.topClosed = true
	b.Balancer.Close()
	b.topMu.Unlock()
	b.pub.mu.Lock()
	b.pub.set = false // no picker is published after Close
	b.pub.mu.Unlock()
	b.cancel()
	b.stopAllServiceHealth()
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
			o.detach()
			delete(b.outliers, id)
		}
	}
}

// answerWindow is how recent another node's answer must be for a deadline
// on this one to count against it.
const answerWindow = 5 * time.Second

// othersAnswer reports whether a node other than o answered a call in the
// last answerWindow. It takes b.mu, which only calls that missed their
// deadline pay.
func (b *rhBalancer) othersAnswer(o *outlier, now time.Time) bool {
	since := now.Add(-answerWindow).UnixNano()
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, other := range b.outliers {
		if other != o && other.lastAnswer.Load() >= since {
			return true
		}
	}
	return false
}

func (b *rhBalancer) outlierFor(id string) *outlier {
	b.mu.Lock()
	defer b.mu.Unlock()
	o, ok := b.outliers[id]
	if !ok {
		o = &outlier{b: b, id: id}
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
	c.b.pub.mu.Lock()
	defer c.b.pub.mu.Unlock()
	c.b.pub.last, c.b.pub.set = s, true
	c.b.publishLocked(s)
}

// republish publishes a picker again from the last state endpointsharding
// reported: a node's service health changed.
func (b *rhBalancer) republish() {
	b.pub.mu.Lock()
	defer b.pub.mu.Unlock()
	if b.pub.set {
		b.publishLocked(b.pub.last)
	}
}

// publishLocked passes s up with our picker in place of endpointsharding's.
// Caller must hold b.pub.mu, which keeps the order of published pickers.
func (b *rhBalancer) publishLocked(s balancer.State) {
	if outside := b.outside.Load(); outside != nil {
		// Subsetting (subset.go): let the adjuster see the new states.
		b.askAdjust()
		if s.ConnectivityState == connectivity.TransientFailure && len(*outside) > 0 {
			// The members failed, but nodes are left to try: calls wait.
			s = balancer.State{ConnectivityState: connectivity.Connecting, Picker: base.NewErrPicker(balancer.ErrNoSubConnAvailable)}
		}
	}
	// Nothing READY: keep endpointsharding's picker, which queues calls
	// while children connect and fails them in TRANSIENT_FAILURE.
	// (endpointsharding itself wakes children that go IDLE.)
	if s.ConnectivityState == connectivity.Ready {
		p := b.newPicker(endpointsharding.ChildStatesFromPicker(s.Picker))
		s.Picker = p
		if len(p.ready) == 0 {
			// Connected, but no node has shown it serves the service.
			s.ConnectivityState = connectivity.Connecting
			if p.unserved != nil {
				s.ConnectivityState = connectivity.TransientFailure
			}
		}
	}
	b.cc.UpdateState(s)
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

// outlier counts one node's consecutive failures (see record) and its
// ejection. Every field is atomic: picks and their Done callbacks run
// concurrently, from the current picker and from older ones, and take no
// lock.
type outlier struct {
	b           *rhBalancer
	id          string
	consecutive atomic.Uint32
	ejections   atomic.Uint32 // ejections in a row, for the growing cool-down
	lastAnswer  atomic.Int64  // unix nanoseconds of the node's last answer
	// suspended keeps the node ejected past its cool-down until a probe
	// gets an answer from it (probe.go): set when it missed deadlines.
	suspended atomic.Bool
	// keyed: with subsetting, a hash key's call went to the node, which
	// therefore stays in the subset (subset.go). Set by picks, cleared
	// when the node fails to connect.
	keyed atomic.Bool
	// state is the ejection's end in unix nanoseconds (0 when never
	// ejected), rounded up to a multiple of 4 so that its two low bits hold
	// the flags below. One word, so that every change of whether b.ejected
	// counts the node is a compare-and-swap against the exact ejection and
	// removal it saw: a check that sees a cool-down over cannot uncount a
	// newer ejection stored meanwhile, and a failure cannot count a node
	// pruned meanwhile.
	state atomic.Int64
	// load is the node's load for least-loaded picks (load.go).
	load nodeLoad
}

const (
	// stCounted: b.ejected counts this node.
	stCounted int64 = 1 << iota
	// stRemoved: the node left the resolver state. Old pickers still
	// record its outcomes, but it is never counted again, as no check of
	// a current picker would ever uncount it.
	stRemoved
	stFlags = stCounted | stRemoved
)

// roundUntil rounds an ejection end up past the flag bits, so that a node
// is never let back before its cool-down.
func roundUntil(ns int64) int64 { return (ns + stFlags) &^ stFlags }

func (o *outlier) isEjected(now time.Time) bool {
	if o.suspended.Load() {
		return true
	}
	w := o.state.Load()
	until := w &^ stFlags
	if until == 0 {
		return false
	}
	if now.UnixNano() < until {
		return true
	}
	// Cool-down over. The counter is lowered after the flag is cleared, so
	// that it never drops below the counted nodes; when the swap fails,
	// another check uncounted this ejection or a failure stored a new one,
	// which stays counted.
	if w&stCounted != 0 && o.state.CompareAndSwap(w, w&^stCounted) {
		o.b.ejected.Add(-1)
	}
	return false
}

// success counts an answer at now (zero: read the clock).
func (o *outlier) success(now time.Time) {
	if now.IsZero() {
		now = timeNow()
	}
	o.lastAnswer.Store(now.UnixNano())
	o.consecutive.Store(0)
	if o.state.Load()&^stFlags != 0 && !o.isEjected(now) {
		o.ejections.Store(0)
	}
}

// failure counts a failed attempt; deadline says it missed its deadline
// (see record), which, when it ejects the node, also suspends it.
func (o *outlier) failure(cfg *lbConfig, deadline bool) {
	if cfg.threshold == 0 {
		return
	}
	if o.isEjected(timeNow()) {
		// A call picked before the ejection, failing now: it says nothing
		// new, and must not lengthen the cool-down (eight callers stuck on
		// a frozen node would otherwise push it to the maximum at once).
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
	until := roundUntil(timeNow().Add(d).UnixNano())
	o.consecutive.Store(0)
	o.eject(until)
	if deadline {
		o.b.suspend(o.id, o)
	}
}

// eject stores an ejection ending at until (a multiple of 4) and counts the
// node unless it is counted already or removed.
func (o *outlier) eject(until int64) {
	for {
		w := o.state.Load()
		// Of two racing failures, the later end wins whatever the order
		// of their swaps.
		nw := max(until, w&^stFlags) | w&stFlags
		count := w&stFlags == 0
		if count {
			// Raised before the flag is set, so that the counter never
			// drops below the counted nodes (a pick that sees too high a
			// counter only checks ejections for nothing).
			nw |= stCounted
			o.b.ejected.Add(1)
		}
		if o.state.CompareAndSwap(w, nw) {
			if o.b.outside.Load() != nil {
				o.b.askAdjust() // subsetting: replace the node
			}
			return
		}
		if count {
			o.b.ejected.Add(-1)
		}
	}
}

// detach marks the node removed and uncounts it. Called when it leaves the
// resolver state; pickers built earlier may keep using the outlier.
func (o *outlier) detach() {
	for {
		w := o.state.Load()
		if o.state.CompareAndSwap(w, (w|stRemoved)&^stCounted) {
			if w&stCounted != 0 {
				o.b.ejected.Add(-1)
			}
			return
		}
	}
}
