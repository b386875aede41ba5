package randomhash

import (
	"math/rand/v2"
	"time"

	"google.golang.org/grpc/balancer"
	"google.golang.org/grpc/balancer/endpointsharding"
	"google.golang.org/grpc/connectivity"
	grpcresolver "google.golang.org/grpc/resolver"

	"github.com/microgrpc/microgrpc/resolver"
)

// Subsetting. A client of a service with more than subsetSize nodes
// connects to subsetSize of them, chosen at random, instead of all: a
// thousand connections per client would cost every node and every client
// memory, and grpc-go's endpointsharding does work proportional to the
// endpoints on every connectivity change, so that connecting to all of a
// large service made its first call wait for a million steps. The subset
// heals itself:
//
//   - a member that fails to connect (TRANSIENT_FAILURE) is dropped and
//     replaced by nodes not tried yet; when every member of a round failed,
//     the next round tries twice as many, so that a fleet where most nodes
//     are gone is searched in a few rounds, not hundreds;
//   - while the members that can take calls (READY and neither ejected nor
//     failing their service health, or still connecting) are fewer than
//     subsetSize, nodes are added;
//   - a call with a hash key goes to the key's node among all the nodes not
//     known to have failed, connected or not, so that every client sends a
//     key to the same node; a call whose filter no connected node matches
//     connects one node that does. Either node then stays in the subset.
//
// Calls wait (CONNECTING) while untried nodes are left, rather than fail
// because the first subset happened to be dead.
//
// The subset is given to endpointsharding as the resolver state; calls
// into endpointsharding (gRPC's and the subset's own) are serialized by
// b.topMu, as endpointsharding requires of its parent.

// subset is the balancer's subsetting state; guarded by rhBalancer.topMu.
type subset struct {
	state   balancer.ClientConnState // the latest from gRPC: all endpoints
	byID    map[string]int           // index into state's endpoints
	members map[string]bool          // given to endpointsharding; nil when off
	failed  map[string]bool          // dropped for failing to connect
	round   int                      // nodes added by the last all-failed round
	ids     []string                 // scratch
}

// active reports whether subsetting is on: more nodes than the size.
func (s *subset) active(size int) bool {
	return size > 0 && len(s.byID) > size
}

// setState takes a new resolver state: members and failures of nodes that
// left are forgotten, and the subset is filled up to size. It returns the
// state for endpointsharding and the nodes outside the subset (nil while
// subsetting is off), which applySubset publishes.
func (b *rhBalancer) setState(st balancer.ClientConnState) (balancer.ClientConnState, []*child) {
	s := &b.sub
	s.state = st
	eps := st.ResolverState.Endpoints
	s.byID = make(map[string]int, len(eps))
	for i, ep := range eps {
		id := nodeID(ep)
		if _, dup := s.byID[id]; !dup {
			s.byID[id] = i
		}
	}
	size := b.cfg.Load().subsetSize
	if !s.active(size) {
		s.members, s.failed = nil, nil
		return st, nil
	}
	for _, m := range []map[string]bool{s.members, s.failed} {
		for id := range m {
			if _, ok := s.byID[id]; !ok {
				delete(m, id)
			}
		}
	}
	if s.members == nil {
		s.members, s.failed = map[string]bool{}, map[string]bool{}
	}
	if n := size - len(s.members); n > 0 {
		s.add(n)
	}
	return b.filtered()
}

// add makes up to n nodes members, chosen at random among those neither
// members nor failed; when none is left, among the failed ones, which
// get another try.
func (s *subset) add(n int) int {
	s.ids = s.ids[:0]
	for id := range s.byID {
		if !s.members[id] && !s.failed[id] {
			s.ids = append(s.ids, id)
		}
	}
	if len(s.ids) == 0 {
		for id := range s.failed {
			s.ids = append(s.ids, id)
		}
	}
	added := 0
	for _, i := range rand.Perm(len(s.ids)) {
		if added == n {
			break
		}
		s.members[s.ids[i]] = true
		delete(s.failed, s.ids[i])
		added++
	}
	return added
}

// untried counts the nodes neither members nor failed.
func (s *subset) untried() int {
	return len(s.byID) - len(s.members) - len(s.failed)
}

// filtered is the state for endpointsharding: the members' endpoints, in
// the resolver's order; and the nodes outside the subset (neither members
// nor failed), for pickers.
func (b *rhBalancer) filtered() (balancer.ClientConnState, []*child) {
	s := &b.sub
	eps := s.state.ResolverState.Endpoints
	keep := make([]grpcresolver.Endpoint, 0, len(s.members))
	outside := make([]*child, 0, len(s.byID)-len(s.members))
	for id, i := range s.byID {
		if !s.members[id] && !s.failed[id] {
			outside = append(outside, &child{id: id, hash: hashString(id), info: resolver.NodeFromEndpoint(eps[i])})
		}
	}

	for _, ep := range eps {
		if s.members[nodeID(ep)] {
			keep = append(keep, ep)
		}
	}
	out := s.state
	out.ResolverState.Endpoints = keep
	out.ResolverState.Addresses = nil
	return out, outside
}

// applySubset gives endpointsharding its members, then publishes the nodes
// outside the subset and a picker that sees them. In that order: a node
// moving into the subset is then, for a moment, both a child and outside
// (harmless: a pick that asks for it waits for the next picker), never
// neither (a hash key would go to another node, a filter would find
// none). Caller holds topMu.
func (b *rhBalancer) applySubset(st balancer.ClientConnState, outside []*child) error {
	err := b.updateChildren(st)
	if outside == nil {
		if b.outside.Swap(nil) == nil {
			return err
		}
	} else {
		b.outside.Store(&outside)
	}
	b.republish()
	return err
}

// want asks for a node to join the subset (a pick needs it).
func (b *rhBalancer) want(id string) {
	b.wantMu.Lock()
	if b.wants == nil {
		b.wants = map[string]bool{}
	}
	b.wants[id] = true
	b.wantMu.Unlock()
	b.askAdjust()
}

// askAdjust asks the adjuster goroutine to look at the subset again.
func (b *rhBalancer) askAdjust() {
	select {
	case b.adjustCh <- struct{}{}:
	default:
	}
}

// adjuster runs adjust whenever asked, until Close. It runs on a goroutine
// of its own because the asking happens inside endpointsharding's state
// updates, which hold its lock.
func (b *rhBalancer) adjuster() {
	defer b.wg.Done()
	for {
		select {
		case <-b.ctx.Done():
			return
		case <-b.adjustCh:
		}
		b.adjust()
	}
}

// adjust applies the last child states to the subset: drops the members
// that failed to connect, adds the nodes picks asked for, and fills the
// subset up to size with nodes that can take calls.
func (b *rhBalancer) adjust() {
	b.topMu.Lock()
	defer b.topMu.Unlock()
	s := &b.sub
	size := b.cfg.Load().subsetSize
	if b.topClosed || s.members == nil || !s.active(size) {
		return
	}
	b.pub.mu.Lock()
	states := endpointsharding.ChildStatesFromPicker(b.pub.last.Picker)
	b.pub.mu.Unlock()
	changed := false
	b.wantMu.Lock()
	for id := range b.wants {
		if _, ok := s.byID[id]; ok && !s.members[id] {
			s.members[id] = true
			delete(s.failed, id)
			changed = true
		}
	}
	clear(b.wants)
	b.wantMu.Unlock()
	usable, failedNow, seen := 0, 0, 0
	now := timeNow()
	for _, st := range states {
		id := nodeID(st.Endpoint)
		if !s.members[id] {
			continue
		}
		seen++
		switch st.State.ConnectivityState {
		case connectivity.TransientFailure:
			if s.untried() == 0 {
				// Nothing to replace it with: it stays, and pickfirst
				// keeps trying it.
				continue
			}
			delete(s.members, id)
			s.failed[id] = true
			failedNow++
			changed = true
		case connectivity.Ready:
			if b.takesCalls(id, now) {
				usable++
			}
		default: // CONNECTING, IDLE (reconnecting)
			usable++
		}
	}
	// Members endpointsharding has not reported yet count as connecting.
	usable += len(s.members) + failedNow - seen
	if usable < size {
		need := size - usable
		if failedNow > 0 && usable == 0 {
			// Everything tried failed: widen the search.
			s.round = max(2*s.round, 2*failedNow, need)
			need = s.round
		} else {
			s.round = 0
		}
		if s.add(need) > 0 {
			changed = true
		}
	}
	if !changed {
		return
	}
	b.applySubset(b.filtered())
}

// takesCalls reports whether a READY node can be picked: not ejected and
// not failing its service health check.
func (b *rhBalancer) takesCalls(id string, now time.Time) bool {
	b.mu.Lock()
	o := b.outliers[id]
	h := b.health[id]
	b.mu.Unlock()
	if o != nil && o.isEjected(now) {
		return false
	}
	return h == nil || h.state.Load() != healthFailing
}
