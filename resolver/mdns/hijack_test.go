package mdns

import (
	"testing"
	"time"
)

// A claimed liveness TTL is kept at most at the cap, however large, and
// one too large to count in nanoseconds is not taken for a negative one.
func TestClaimedTTLIsCapped(t *testing.T) {
	ct := newCacheTest(t)
	start := ct.now
	ct.seen("a", "n1", "127.0.0.1:1", 1_000_000_000)
	ct.seen("c", "n3", "127.0.0.1:3", 30)
	// A second later, so that n1 and n2 expire one by one.
	ct.now = ct.now.Add(time.Second)
	ct.seen("b", "n2", "127.0.0.1:2", 1<<40) // overflows a time.Duration
	ct.events("create n1 127.0.0.1:1", "create n3 127.0.0.1:3", "create n2 127.0.0.1:2")
	for inst, want := range map[string]time.Duration{"a": MaxTTL, "b": MaxTTL, "c": 30 * time.Second} {
		key := ct.b.instances[ct.inst(inst)]
		if got := ct.b.nodes[key].instances[ct.inst(inst)].ttl; got != want {
			t.Errorf("instance %s: TTL kept %v, want %v", inst, got, want)
		}
	}
	ct.b.expire(start.Add(MaxTTL - time.Second))
	ct.events("delete n3 127.0.0.1:3")
	ct.b.expire(start.Add(MaxTTL + 500*time.Millisecond))
	ct.events("delete n1 127.0.0.1:1")
	ct.b.expire(start.Add(MaxTTL + 1500*time.Millisecond))
	ct.events("delete n2 127.0.0.1:2")
	ct.resolved()
}

// A goodbye for the reported instance, spoofed next to an impostor's claim
// on the same node, hands the node to the impostor only until the live
// instance answers again: it takes its node back at once.
func TestInstanceHeardAfterGoodbyeTakesItsNodeBack(t *testing.T) {
	ct := newCacheTest(t)
	ct.seen("live", "n1", "127.0.0.1:1", 30)
	ct.b.remove(ct.inst("live"), "goodbye")
	ct.seen("fake", "n1", "127.0.0.1:2", 1_000_000_000)
	ct.seen("live", "n1", "127.0.0.1:1", 30)
	ct.events("create n1 127.0.0.1:1", "delete n1 127.0.0.1:1", "create n1 127.0.0.1:2", "update n1 127.0.0.1:1")
	ct.resolved("n1 127.0.0.1:1")
	// Once back, it is an ordinary claim: the impostor's next sighting
	// changes nothing.
	ct.seen("fake", "n1", "127.0.0.1:2", 1_000_000_000)
	ct.events()
	ct.resolved("n1 127.0.0.1:1")
}

// Only an instance that was the node's reported claim when it said
// goodbye takes the node back, and only when the browser's socket hears
// it: an impostor that was a second claim gains nothing by saying goodbye
// itself, and the zeroconf Browse's late report is no answer.
func TestOnlyTheReportedInstanceTakesItsNodeBack(t *testing.T) {
	ct := newCacheTest(t)
	ct.seen("live", "n1", "127.0.0.1:1", 30)
	ct.seen("fake", "n1", "127.0.0.1:2", 30)
	ct.b.remove(ct.inst("fake"), "goodbye")
	ct.seen("fake", "n1", "127.0.0.1:2", 30)
	ct.events("create n1 127.0.0.1:1")
	ct.resolved("n1 127.0.0.1:1")

	ct.seen("other", "n2", "127.0.0.1:3", 30)
	ct.b.remove(ct.inst("other"), "goodbye")
	ct.seen("impostor", "n2", "127.0.0.1:4", 30)
	ct.events("create n2 127.0.0.1:3", "delete n2 127.0.0.1:3", "create n2 127.0.0.1:4")
	ct.now = time.Now().Add(lateWindow)
	ct.seenLate("other", "n2", "127.0.0.1:3", 30)
	ct.events()
	ct.resolved("n1 127.0.0.1:1", "n2 127.0.0.1:4")
}

// An instance remembered for its goodbye is forgotten after the cap.
func TestFarewellsExpire(t *testing.T) {
	ct := newCacheTest(t)
	ct.seen("a", "n1", "127.0.0.1:1", 30)
	ct.b.remove(ct.inst("a"), "goodbye")
	if len(ct.b.farewells) != 1 {
		t.Fatalf("farewells %v, want a's", ct.b.farewells)
	}
	ct.b.expire(time.Now().Add(MaxTTL))
	if len(ct.b.farewells) != 0 {
		t.Fatalf("farewells %v after the cap, want none", ct.b.farewells)
	}
	ct.events("create n1 127.0.0.1:1", "delete n1 127.0.0.1:1")
}
