package mdns

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/microgrpc/microgrpc/resolver"
	"github.com/microgrpc/microgrpc/resolver/mdns/internal/txt"
)

// These tests feed sightings to a browser's cache directly: nothing is
// sent or received.

// cacheTest is a browser that is never started, with a watcher of every
// service.
type cacheTest struct {
	t   *testing.T
	b   *browser
	w   resolver.Watcher
	now time.Time
}

func newCacheTest(t *testing.T) *cacheTest {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	b := newBrowser(options{domain: DefaultDomain, logger: slog.New(slog.DiscardHandler)}, nil)
	t.Cleanup(b.cancel)
	w := b.watch(ctx, "")
	t.Cleanup(w.Stop)
	return &cacheTest{t: t, b: b, w: w, now: time.Now()}
}

func (ct *cacheTest) inst(name string) string { return name + "." + ct.b.fqdnType }

// seen is a sighting of instance claiming node id of "svc" at addr, with a
// TTL in seconds.
func (ct *cacheTest) seen(instance, id, addr string, ttl int) {
	ct.t.Helper()
	ct.b.seen(ct.inst(instance), ct.txt(id, addr, ttl), ct.now)
}

// seenLate is the same sighting reported by the zeroconf Browse.
func (ct *cacheTest) seenLate(instance, id, addr string, ttl int) {
	ct.t.Helper()
	ct.b.seenFrom(ct.inst(instance), ct.txt(id, addr, ttl), ct.now, true)
}

func (ct *cacheTest) txt(id, addr string, ttl int) []string {
	ct.t.Helper()
	s := &resolver.Service{Name: "svc", Nodes: []resolver.Node{{ID: id, Address: addr}}}
	strs, _, err := txt.Encode(s, s.Nodes[0], ttl)
	if err != nil {
		ct.t.Fatal(err)
	}
	return strs
}

// events checks that the watcher got exactly want ("<action> <id> <addr>")
// since the last call: a marker node seen last must come right after them.
func (ct *cacheTest) events(want ...string) {
	ct.t.Helper()
	ct.seen("marker", "marker", "127.0.0.1:9", 3600)
	want = append(want, "create marker 127.0.0.1:9")
	for _, wnt := range want {
		ev, err := ct.w.Next()
		if err != nil {
			ct.t.Fatal(err)
		}
		n := ev.Service.Nodes[0]
		if got := string(ev.Action) + " " + n.ID + " " + n.Address; got != wnt {
			ct.t.Fatalf("event %q, want %q", got, wnt)
		}
	}
	ct.b.remove(ct.inst("marker"), "test marker")
	if ev, err := ct.w.Next(); err != nil || ev.Action != resolver.Delete || ev.Service.Nodes[0].ID != "marker" {
		ct.t.Fatalf("event %v, %v; want the marker's deletion", ev, err)
	}
}

// resolved checks the addresses GetService would return.
func (ct *cacheTest) resolved(want ...string) {
	ct.t.Helper()
	got := map[string]bool{}
	for _, s := range ct.b.service("svc") {
		got[s.Nodes[0].ID+" "+s.Nodes[0].Address] = true
	}
	if len(got) != len(want) {
		ct.t.Fatalf("resolved %v, want %v", got, want)
	}
	for _, w := range want {
		if !got[w] {
			ct.t.Fatalf("resolved %v, want %v", got, want)
		}
	}
}

// A second instance claiming a live node's id changes nothing, and its
// expiry deletes nothing.
func TestSecondClaimLeavesLiveNode(t *testing.T) {
	ct := newCacheTest(t)
	ct.seen("live", "n1", "127.0.0.1:1", 30)
	ct.seen("fake", "n1", "127.0.0.1:2", 1)
	ct.events("create n1 127.0.0.1:1")
	ct.resolved("n1 127.0.0.1:1")
	for range 3 {
		ct.now = ct.now.Add(time.Second)
		ct.seen("live", "n1", "127.0.0.1:1", 30) // still answering
		ct.b.expire(ct.now)
	}
	ct.events()
	ct.resolved("n1 127.0.0.1:1")
	if _, ok := ct.b.instances[ct.inst("fake")]; ok {
		t.Fatal("the expired claim is still cached")
	}
}

// When the instance reported for a node stops answering, another that
// claims the node and still answers takes over: an update, not a delete.
func TestClaimTakesOverFromExpiredOne(t *testing.T) {
	ct := newCacheTest(t)
	ct.seen("fake", "n1", "127.0.0.1:2", 1)
	ct.seen("live", "n1", "127.0.0.1:1", 30)
	ct.events("create n1 127.0.0.1:2")
	ct.now = ct.now.Add(2 * time.Second)
	ct.b.expire(ct.now)
	ct.events("update n1 127.0.0.1:1")
	ct.resolved("n1 127.0.0.1:1")
}

// A goodbye from the reported instance hands the node to the other
// claimant; the last goodbye deletes it.
func TestGoodbyesFailOverThenDelete(t *testing.T) {
	ct := newCacheTest(t)
	ct.seen("a", "n1", "127.0.0.1:1", 30)
	ct.now = ct.now.Add(time.Millisecond)
	ct.seen("b", "n1", "127.0.0.1:1", 30) // same data: no event on takeover
	ct.now = ct.now.Add(time.Millisecond)
	ct.seen("c", "n1", "127.0.0.1:3", 30) // seen last: takes over first
	ct.b.remove(ct.inst("a"), "goodbye")
	ct.events("create n1 127.0.0.1:1", "update n1 127.0.0.1:3")
	ct.b.remove(ct.inst("b"), "goodbye") // not reported: no event
	ct.events()
	ct.b.remove(ct.inst("c"), "goodbye")
	ct.events("delete n1 127.0.0.1:3")
	ct.resolved()
}

// When every claim expires at once, the node is deleted once, without
// first being handed to a claim that is expiring too.
func TestAllClaimsExpireTogether(t *testing.T) {
	ct := newCacheTest(t)
	ct.seen("a", "n1", "127.0.0.1:1", 1)
	ct.seen("b", "n1", "127.0.0.1:2", 1)
	ct.now = ct.now.Add(2 * time.Second)
	ct.b.expire(ct.now)
	ct.events("create n1 127.0.0.1:1", "delete n1 127.0.0.1:1")
	ct.resolved()
}

// An instance whose data now names another node id leaves the old node.
func TestInstanceChangingItsNodeID(t *testing.T) {
	ct := newCacheTest(t)
	ct.seen("a", "n1", "127.0.0.1:1", 30)
	ct.seen("a", "n2", "127.0.0.1:1", 30)
	ct.events("create n1 127.0.0.1:1", "delete n1 127.0.0.1:1", "create n2 127.0.0.1:1")
	ct.resolved("n2 127.0.0.1:1")
}

// The reported instance's own changes are updates, as before.
func TestReportedInstanceUpdates(t *testing.T) {
	ct := newCacheTest(t)
	ct.seen("a", "n1", "127.0.0.1:1", 30)
	ct.seen("a", "n1", "127.0.0.1:1", 30)
	ct.seen("a", "n1", "127.0.0.1:5", 30)
	ct.events("create n1 127.0.0.1:1", "update n1 127.0.0.1:5")
	ct.resolved("n1 127.0.0.1:5")
}

// The zeroconf Browse reports what it saw later than the browser's socket:
// its report of an instance that has said goodbye since does not bring the
// node back (it would stay for its whole TTL), while the socket's sighting
// of a new announcement does, and so does the Browse's once the goodbye is
// old.
func TestLateSightingAfterGoodbyeIsIgnored(t *testing.T) {
	ct := newCacheTest(t)
	ct.seen("a", "n1", "127.0.0.1:1", 30)
	ct.b.remove(ct.inst("a"), "goodbye")
	ct.seenLate("a", "n1", "127.0.0.1:1", 30)
	ct.events("create n1 127.0.0.1:1", "delete n1 127.0.0.1:1")
	ct.resolved()
	ct.seen("a", "n1", "127.0.0.1:1", 30) // registered again
	ct.events("create n1 127.0.0.1:1")
	ct.b.remove(ct.inst("a"), "goodbye")
	ct.events("delete n1 127.0.0.1:1")
	ct.now = time.Now().Add(lateWindow)
	ct.seenLate("a", "n1", "127.0.0.1:1", 30)
	ct.events("create n1 127.0.0.1:1")
	ct.resolved("n1 127.0.0.1:1")
}
