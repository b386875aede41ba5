package randomhash

import (
	"maps"
	"math/rand/v2"
	"time"

	"google.golang.org/grpc/balancer"
	"google.golang.org/grpc/balancer/endpointsharding"
	"google.golang.org/grpc/connectivity"
	grpcresolver "google.golang.org/grpc/resolver"

	"github.com/microgrpc/microgrpc/internal/backoff"
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
//     are gone is searched in a few rounds, not hundreds. A failed node is
//     left alone for a backoff that grows with its failures in a row
//     (failedBackoff), then is a candidate again: a node that blipped is
//     reconnected when a pick needs it (its hash key, a filter) or the
//     subset needs filling;
//   - while the members that can take calls (READY and neither ejected nor
//     failing their service health, or still connecting) are fewer than
//     subsetSize, nodes are added, up to twice subsetSize members in all
//     (except in the widening rounds above, which only last while nothing
//     connects): a fleet-wide NOT_SERVING must not connect every client to
//     every node;
//   - once subsetSize members serve, the members that cannot take calls
//     and those beyond subsetSize are dropped again, so that the subset
//     shrinks back after a blip. The nodes that picks asked for (a hash
//     key's node, a filter's) and the nodes that hash keys went to stay;
//   - a call with a hash key goes to the key's node among all the nodes not
//     known to have failed, connected or not, so that every client sends a
//     key to the same node; a call whose filter no connected node matches
//     connects one node that does. Either node then stays in the subset.
//
// The subset is looked at again whenever a member's state, health or
// ejection changes, and when a failure's backoff or a member's ejection
// ends. Calls wait (CONNECTING) while untried nodes are left, rather than
// fail because the first subset happened to be dead.
//
// The subset is given to endpointsharding as the resolver state; calls
// into endpointsharding (gRPC's and the subset's own) are serialized by
// b.topMu, as endpointsharding requires of its parent.

// failedBackoff is how long a node that failed to connect is left out of
// the subset, by its failures in a row.
var failedBackoff = backoff.Policy{Min: time.Second, Max: 30 * time.Second}

// subset is the balancer's subsetting state; guarded by rhBalancer.topMu.
type subset struct {
	state   balancer.ClientConnState // the latest from gRPC: all endpoints
	byID    map[string]int           // index into state's endpoints
	members map[string]bool          // given to endpointsharding; nil when off
	pinned  map[string]bool          // members picks asked for: never trimmed
	// failed holds the nodes dropped for failing to connect, until when
	// they are left out; strikes their failures in a row (kept after the
	// backoff ends, cleared when the node is READY).
	failed  map[string]time.Time
	strikes map[string]int
	round   int      // nodes added by the last all-failed round
	ids     []string // scratch
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
		s.members, s.pinned, s.failed, s.strikes = nil, nil, nil, nil
		return st, nil
	}
	if s.members == nil {
		s.members, s.pinned, s.failed, s.strikes = map[string]bool{}, map[string]bool{}, map[string]time.Time{}, map[string]int{}
	}
	gone := func(id string) bool { _, ok := s.byID[id]; return !ok }
	maps.DeleteFunc(s.members, func(id string, _ bool) bool { return gone(id) })
	maps.DeleteFunc(s.pinned, func(id string, _ bool) bool { return gone(id) })
	maps.DeleteFunc(s.failed, func(id string, _ time.Time) bool { return gone(id) })
	maps.DeleteFunc(s.strikes, func(id string, _ int) bool { return gone(id) })
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
		if _, failed := s.failed[id]; !s.members[id] && !failed {
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

// expire ends the failures whose backoff is over, so that the nodes are
// candidates again. It reports whether any ended, and when the next one
// will (zero: none left).
func (s *subset) expire(now time.Time) (ended bool, next time.Time) {
	for id, until := range s.failed {
		if !now.Before(until) {
			delete(s.failed, id)
			ended = true
		} else if next.IsZero() || until.Before(next) {
			next = until
		}
	}
	return ended, next
}

// fail drops member id for failing to connect, for a backoff by its
// failures in a row.
func (s *subset) fail(id string, now time.Time) {
	delete(s.members, id)
	delete(s.pinned, id)
	s.failed[id] = now.Add(failedBackoff.Delay(s.strikes[id]))
	s.strikes[id]++
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
		if _, failed := s.failed[id]; !s.members[id] && !failed {
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

// adjuster runs adjust whenever asked, and when adjust asks to be run
// again at a time (a backoff or an ejection ends), until Close. It runs on
// a goroutine of its own because the asking happens inside
// endpointsharding's state updates, which hold its lock.
func (b *rhBalancer) adjuster() {
	defer b.wg.Done()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case <-b.ctx.Done():
			return
		case <-b.adjustCh:
		case <-timer.C:
		}
		if next := b.adjust(); next.IsZero() {
			timer.Stop()
		} else {
			timer.Reset(next.Sub(timeNow()))
		}
	}
}

// Kinds of member for adjust.
const (
	memberServing  = iota // READY and takes calls
	memberPending         // connecting, or READY with its first health answer on the way
	memberUnusable        // READY, but ejected or failing its service health
)

// adjust applies the last child states to the subset: drops the members
// that failed to connect, adds the nodes picks asked for, fills the subset
// up to size with nodes that can take calls (up to the cap), and trims it
// back to size once size members serve. It returns when it wants to run
// again (zero: on the next change only).
func (b *rhBalancer) adjust() time.Time {
	b.topMu.Lock()
	defer b.topMu.Unlock()
	s := &b.sub
	size := b.cfg.Load().subsetSize
	if b.topClosed || s.members == nil || !s.active(size) {
		return time.Time{}
	}
	b.pub.mu.Lock()
	states := endpointsharding.ChildStatesFromPicker(b.pub.last.Picker)
	b.pub.mu.Unlock()
	now := timeNow()
	changed, next := s.expire(now)
	b.wantMu.Lock()
	for id := range b.wants {
		if _, ok := s.byID[id]; ok && !s.members[id] {
			s.members[id] = true
			s.pinned[id] = true
			delete(s.failed, id)
			changed = true
		}
	}
	clear(b.wants)
	b.wantMu.Unlock()
	serving, pending, failedNow, seen := 0, 0, 0, 0
	// The members that may be dropped, by kind.
	var trim [3][]string
	for _, st := range states {
		id := nodeID(st.Endpoint)
		if !s.members[id] {
			continue
		}
		seen++
		kind := memberPending
		switch st.State.ConnectivityState {
		case connectivity.TransientFailure:
			if s.untried() == 0 {
				// Nothing to replace it with: it stays, and pickfirst
				// keeps trying it.
				continue
			}
			s.fail(id, now)
			if until := s.failed[id]; next.IsZero() || until.Before(next) {
				next = until
			}
			b.forgetKey(id)
			failedNow++
			changed = true
			continue
		case connectivity.Ready:
			delete(s.strikes, id) // it connects: its failures are forgiven
			var ends time.Time
			kind, ends = b.memberKind(id, now)
			if !ends.IsZero() && (next.IsZero() || ends.Before(next)) {
				next = ends // its ejection ends: look again then
			}
		}
		switch kind {
		case memberServing:
			serving++
		case memberPending:
			pending++
		}
		if !s.pinned[id] && !b.keyed(id) {
			trim[kind] = append(trim[kind], id)
		}
	}
	// Members endpointsharding has not reported yet count as connecting.
	pending += len(s.members) + failedNow - seen
	switch {
	case serving+pending < size:
		need := size - serving - pending
		if failedNow > 0 && serving+pending == 0 {
			// Everything tried failed: widen the search.
			s.round = max(2*s.round, 2*failedNow, need)
			need = s.round
		} else {
			s.round = 0
			need = min(need, b.growRoom(size))
		}
		if need > 0 && s.add(need) > 0 {
			changed = true
		}
		// Over the cap (after a widening round): connected members that
		// cannot take calls go first.
		for over := -b.growRoom(size); over > 0 && len(trim[memberUnusable]) > 0; over-- {
			s.drop(&trim[memberUnusable])
			changed = true
		}
	case serving >= size:
		s.round = 0
		// Enough members serve: the others are not needed, nor those
		// beyond size.
		for len(trim[memberUnusable]) > 0 {
			s.drop(&trim[memberUnusable])
			changed = true
		}
		for len(trim[memberPending]) > 0 {
			s.drop(&trim[memberPending])
			changed = true
		}
		for extra := serving - size; extra > 0 && len(trim[memberServing]) > 0; extra-- {
			s.drop(&trim[memberServing])
			changed = true
		}
	}
	if changed {
		b.applySubset(b.filtered())
	}
	return next
}

// growRoom is how many members may be added before those that may be
// dropped (neither pinned nor a hash key's) are twice size; negative when
// they are more.
func (b *rhBalancer) growRoom(size int) int {
	n := 0
	for id := range b.sub.members {
		if !b.sub.pinned[id] && !b.keyed(id) {
			n++
		}
	}
	return 2*size - n
}

// drop removes a random one of list from the members (and from list).
func (s *subset) drop(list *[]string) {
	l := *list
	i := rand.IntN(len(l))
	delete(s.members, l[i])
	l[i] = l[len(l)-1]
	*list = l[:len(l)-1]
}

// memberKind says whether a READY member can take calls: not ejected and
// not failing its service health check. For an ejected one it also
// returns when the ejection ends (zero when only a probe ends it, which
// asks for an adjust).
func (b *rhBalancer) memberKind(id string, now time.Time) (int, time.Time) {
	b.mu.Lock()
	o := b.outliers[id]
	h := b.health[id]
	b.mu.Unlock()
	if o != nil && o.isEjected(now) {
		if o.suspended.Load() {
			return memberUnusable, time.Time{}
		}
		return memberUnusable, time.Unix(0, o.state.Load()&^stFlags)
	}
	if h != nil {
		switch h.state.Load() {
		case healthUnknown:
			return memberPending, time.Time{}
		case healthFailing:
			return memberUnusable, time.Time{}
		}
	}
	return memberServing, time.Time{}
}

// keyed reports whether hash keys went to node id (see outlier.keyed).
func (b *rhBalancer) keyed(id string) bool {
	b.mu.Lock()
	o := b.outliers[id]
	b.mu.Unlock()
	return o != nil && o.keyed.Load()
}

// forgetKey clears node id's keyed flag: it failed, and left the subset.
func (b *rhBalancer) forgetKey(id string) {
	b.mu.Lock()
	o := b.outliers[id]
	b.mu.Unlock()
	if o != nil {
		o.keyed.Store(false)
	}
}
