package randomhash

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"google.golang.org/grpc/balancer"
	"google.golang.org/grpc/balancer/endpointsharding"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/status"

	"github.com/microgrpc/microgrpc/resolver"
)

// randIntN is the random source of picks; tests may replace it.
var randIntN = rand.IntN

// child is one endpoint as a picker sees it.
type child struct {
	id    string
	hash  uint64 // of id, for rendezvous hashing
	info  *resolver.NodeInfo
	ready bool
	// pending: not ready, but connecting (or about to); a hash pick with
	// subsetting waits for it rather than send the key elsewhere.
	pending bool
	picker  balancer.Picker // the pickfirst child's picker, when ready
	outlier *outlier
	// done records the attempt's outcome; made once per picker so that a
	// pick allocates nothing.
	done func(balancer.DoneInfo)
}

// picker is an immutable snapshot of the children, built on every state
// change. Pick takes no lock.
type picker struct {
	b        *rhBalancer
	cfg      *lbConfig
	service  string
	ready    []*child
	notReady []*child
	// outside is the nodes outside the subset (subset.go), nil while
	// subsetting is off: a pick that needs one of them asks for it.
	outside []*child
	// unserved, when no node is ready because every connected one failed
	// its service health check (none is still unanswered), says so; Pick
	// returns it. A plain error, not a status: fail-fast calls fail with
	// Unavailable and this text, wait-for-ready calls wait.
	unserved error
}

var _ balancer.Picker = (*picker)(nil)

func (b *rhBalancer) newPicker(states []endpointsharding.ChildState) *picker {
	p := &picker{b: b, cfg: b.cfg.Load()}
	if o := b.outside.Load(); o != nil {
		p.outside = *o
	}
	var failing []string
	waiting := false
	for _, st := range states {
		c := &child{
			id:    nodeID(st.Endpoint),
			info:  resolver.NodeFromEndpoint(st.Endpoint),
			ready: st.State.ConnectivityState == connectivity.Ready,
		}
		if c.ready && p.cfg.serviceHealth && c.info != nil && c.info.HealthService != "" {
			// Connected and healthy as a server; it must also serve the
			// service (health.go).
			h := b.healthFor(c.id)
			state := healthUnknown
			if h != nil {
				state = h.state.Load()
			}
			switch state {
			case healthUnknown:
				c.ready, waiting = false, true
				c.pending = true // its first health answer is on the way
			case healthFailing:
				c.ready = false
				failing = append(failing, fmt.Sprintf("node %s %s", c.id, h.err()))
			}
		}
		c.hash = hashString(c.id)
		c.outlier = b.outlierFor(c.id)
		cfg, o := p.cfg, c.outlier
		c.done = func(di balancer.DoneInfo) { record(o, cfg, di) }
		if c.info != nil && p.service == "" {
			p.service = c.info.Service
		}
		if c.ready {
			c.picker = st.State.Picker
			p.ready = append(p.ready, c)
		} else {
			cs := st.State.ConnectivityState
			c.pending = c.pending || cs == connectivity.Connecting || cs == connectivity.Idle
			p.notReady = append(p.notReady, c)
		}
	}
	if len(p.ready) == 0 && !waiting && len(failing) > 0 {
		if len(failing) > 3 {
			failing = append(failing[:3], fmt.Sprintf("and %d more", len(failing)-3))
		}
		p.unserved = fmt.Errorf("randomhash: no connected node of service %q serves it: %s", p.service, strings.Join(failing, "; "))
	}
	return p
}

// record counts an attempt's outcome for outlier ejection. UNAVAILABLE is
// a failure of the node. DEADLINE_EXCEEDED is one too while another node
// answers: a node that stopped answering without closing its connections
// (a long GC pause, a SIGSTOP, packets dropped) fails only that way, and
// without this every caller would end up waiting on it. When no other node
// answers either, the deadline is the caller's (too short for the work),
// not the node's. A cancelled call says nothing about the node.
func record(o *outlier, cfg *lbConfig, di balancer.DoneInfo) {
	recordAt(o, cfg, di, time.Time{})
}

// recordAt is record with the time of the outcome when the caller has
// read it already (zero: not read); reading the clock is a good part of
// a pick's cost.
func recordAt(o *outlier, cfg *lbConfig, di balancer.DoneInfo, now time.Time) {
	switch status.Code(di.Err) {
	case codes.OK:
		o.success(now)
	case codes.Unavailable:
		if strings.HasPrefix(status.Convert(di.Err).Message(), shedPrefix) {
			// The node is alive and refused the call for load: no
			// reason to eject it (under overload every node would be),
			// while least-loaded picks see it as loaded (load.go).
			return
		}
		o.failure(cfg, false)
	case codes.DeadlineExceeded:
		if o.b.othersAnswer(o, timeNow()) {
			o.failure(cfg, true)
		}
	case codes.Canceled:
	case codes.Unimplemented:
		// A node without the service (misserve.go) has not answered;
		// any other Unimplemented is an answer.
		if !strings.HasPrefix(status.Convert(di.Err).Message(), unknownServicePrefix) {
			o.success(now)
		}
	default:
		// The node answered (with an application error): it is alive.
		o.success(now)
	}
}

// shedPrefix starts the refusal of a node that sheds load: package
// interceptors/shed's RefusedMessage, which its tests check against this.
const shedPrefix = "shed: node overloaded"

// Relaxation levels: a pick first looks for a node that matches the
// filters, has not been tried by this call and is not ejected; failing
// that it accepts an ejected node, then one this call already tried.
const (
	levelStrict = iota
	levelAllowEjected
	levelAllowTried
	levels
)

func (p *picker) Pick(info balancer.PickInfo) (balancer.PickResult, error) {
	if len(p.ready) == 0 {
		if p.unserved != nil {
			return balancer.PickResult{}, p.unserved
		}
		return balancer.PickResult{}, balancer.ErrNoSubConnAvailable
	}
	cs := callStateFrom(info.Ctx)
	var now time.Time
	checkEjected := p.b.ejected.Load() > 0
	if checkEjected {
		now = timeNow()
	}
	if !checkEjected && (cs == nil || cs.plain()) {
		n := len(p.ready)
		if !p.cfg.leastLoaded || n == 1 {
			return p.pickFrom(p.ready[randIntN(n)], cs, info, 0)
		}
		i, j := drawTwo(n)
		at := timeNow().UnixNano()
		return p.pickFrom(lessLoaded(p.ready[i], p.ready[j], at), cs, info, at)
	}
	q := query{cs: cs, checkEjected: checkEjected, now: now}
	if cs != nil {
		if cs.hasKey {
			q.keyHash = hashString(cs.key)
		}
		// tried only grows, and only between attempts: the elements
		// below this length never change.
		cs.mu.Lock()
		q.tried = cs.tried
		cs.mu.Unlock()
	}
	for level := range levels {
		if c := p.choose(&q, level); c != nil {
			if c.picker == nil {
				// The key's node, not connected yet (subsetting).
				if !c.pending {
					p.b.want(c.id)
				}
				return balancer.PickResult{}, balancer.ErrNoSubConnAvailable
			}
			return p.pickFrom(c, cs, info, q.at)
		}
	}
	// Only a filter can leave nothing to choose.
	for _, c := range p.notReady {
		if matches(c, cs) {
			return balancer.PickResult{}, balancer.ErrNoSubConnAvailable // it may connect
		}
	}
	if c := p.randomMatch(p.outside, cs); c != nil {
		p.b.want(c.id) // connect one node that matches, and wait for it
		return balancer.PickResult{}, balancer.ErrNoSubConnAvailable
	}
	return balancer.PickResult{}, status.Errorf(codes.Unavailable,
		"randomhash: no node of service %q matches filter %s", p.service, cs.describeFilter())
}

// plain reports whether the call has nothing that changes a random pick.
func (cs *callState) plain() bool {
	if cs.hasKey || cs.filtered() {
		return false
	}
	cs.mu.Lock()
	defer cs.mu.Unlock()
	return len(cs.tried) == 0
}

// query is what one pick looks for.
type query struct {
	cs           *callState
	keyHash      uint64
	tried        []string
	checkEjected bool
	now          time.Time
	at           int64 // unix nanoseconds of a least-loaded draw; 0: none yet
}

func (q *query) eligible(c *child, level int) bool {
	if !matches(c, q.cs) {
		return false
	}
	if level < levelAllowTried {
		for _, id := range q.tried {
			if id == c.id {
				return false
			}
		}
	}
	if level < levelAllowEjected && q.checkEjected && c.outlier != nil && c.outlier.isEjected(q.now) {
		return false
	}
	return true
}

// choose returns the eligible ready child at this level: the key's
// highest-scoring one in hash mode, a uniformly random one otherwise.
func (p *picker) choose(q *query, level int) *child {
	if q.cs != nil && q.cs.hasKey {
		var best *child
		var bestScore uint64
		consider := func(c *child) {
			if !q.eligible(c, level) {
				return
			}
			if s := mix(q.keyHash ^ c.hash); best == nil || s > bestScore {
				best, bestScore = c, s
			}
		}
		for _, c := range p.ready {
			consider(c)
		}
		if p.outside != nil {
			// Subsetting: the key's node among all nodes not known to
			// have failed, so that every client picks the same one.
			for _, c := range p.notReady {
				if c.pending {
					consider(c)
				}
			}
			for _, c := range p.outside {
				consider(c)
			}
		}
		return best
	}
	n := 0
	for _, c := range p.ready {
		if q.eligible(c, level) {
			n++
		}
	}
	if n == 0 {
		return nil
	}
	if !p.cfg.leastLoaded || n == 1 {
		return p.nthEligible(q, level, randIntN(n))
	}
	i, j := drawTwo(n)
	if q.at == 0 {
		if q.checkEjected {
			q.at = q.now.UnixNano() // read for the ejection checks already
		} else {
			q.at = timeNow().UnixNano()
		}
	}
	return lessLoaded(p.nthEligible(q, level, i), p.nthEligible(q, level, j), q.at)
}

// drawTwo returns two different random indexes below n (n >= 2).
func drawTwo(n int) (i, j int) {
	i, j = randIntN(n), randIntN(n-1)
	if j >= i {
		j++
	}
	return i, j
}

// nthEligible returns the k-th (from 0) eligible ready child at level.
func (p *picker) nthEligible(q *query, level, k int) *child {
	for _, c := range p.ready {
		if q.eligible(c, level) {
			if k == 0 {
				return c
			}
			k--
		}
	}
	return nil
}

// randomMatch returns a random one of among that matches call's filter,
// or nil.
func (p *picker) randomMatch(among []*child, call *callState) *child {
	n := 0
	var pick *child
	for _, c := range among {
		if matches(c, call) {
			n++
			if randIntN(n) == 0 {
				pick = c
			}
		}
	}
	return pick
}

func matches(c *child, cs *callState) bool {
	if cs == nil || !cs.filtered() {
		return true
	}
	// The node filter works on endpoints of any resolver: c.id is the
	// node id, or the address where there is none.
	if cs.node != "" && c.id != cs.node {
		return false
	}
	if cs.version == "" && len(cs.metadata) == 0 {
		return true
	}
	if c.info == nil {
		return false
	}
	if cs.version != "" && c.info.Version != cs.version {
		return false
	}
	for _, kv := range cs.metadata {
		if v, ok := c.info.Metadata[kv[0]]; !ok || v != kv[1] {
			return false
		}
	}
	return true
}

// pickFrom picks c's connection. at is the time of the least-loaded draw
// that chose c (0: none, and with least-loaded picks it is read here).
func (p *picker) pickFrom(c *child, cs *callState, info balancer.PickInfo, at int64) (balancer.PickResult, error) {
	res, err := c.picker.Pick(info)
	if err != nil {
		return res, err
	}
	if cs != nil {
		cs.addTried(c.id, c.outlier)
		if cs.hasKey && p.outside != nil && !c.outlier.keyed.Load() {
			c.outlier.keyed.Store(true) // the key's node stays in the subset
		}
	}
	if p.cfg.leastLoaded {
		if at == 0 {
			at = timeNow().UnixNano()
		}
		res.Done = newLoadDone(c.outlier, p.cfg, at, cs != nil && cs.stream, res.Done)
		return res, nil
	}
	if res.Done == nil {
		res.Done = c.done
	} else {
		inner := res.Done
		res.Done = func(di balancer.DoneInfo) {
			c.done(di)
			inner(di)
		}
	}
	return res, nil
}

// hashString is 64-bit FNV-1a.
func hashString(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}

// mix is the splitmix64 finalizer: it spreads key^node into a score, so
// that rendezvous hashing gives every node an even share of keys.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}
