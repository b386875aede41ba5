package randomhash

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/balancer"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// pickCounts makes n plain picks on p and counts them by node; done, when
// set, ends each pick (else the picks stay in flight).
func pickCounts(t *testing.T, p *picker, n int, done func(id string, res balancer.PickResult)) map[string]int {
	t.Helper()
	got := map[string]int{}
	for range n {
		cs := &callState{}
		cs.tried = cs.first[:0]
		res, err := p.Pick(balancer.PickInfo{Ctx: context.WithValue(context.Background(), callStateKey{}, cs)})
		if err != nil {
			t.Fatal(err)
		}
		got[cs.tried[0]]++
		if done != nil {
			done(cs.tried[0], res)
		}
	}
	return got
}

// A node whose calls do not come back (frozen) has ever more in flight,
// and loses every draw against nodes that answer: with three nodes it
// gets none of the calls once the others answer, where a uniform pick
// would send it a third.
func TestLeastLoadedAvoidsNodeWhoseCallsDoNotReturn(t *testing.T) {
	clock := useFakeClock(t)
	p := testPicker(3)
	got := pickCounts(t, p, 3000, func(id string, res balancer.PickResult) {
		if id == "node-0" {
			return // frozen: never done
		}
		clock.advance(time.Millisecond)
		res.Done(balancer.DoneInfo{})
	})
	// node-0 wins draws only until its calls in flight outweigh the
	// others' latency: a handful, where a uniform pick sends it 1,000.
	if got["node-0"] > 20 {
		t.Fatalf("picks %v: the frozen node got %d calls, want at most 20", got, got["node-0"])
	}
	if got["node-1"] < 1000 || got["node-2"] < 1000 {
		t.Fatalf("picks %v: the answering nodes should share the calls", got)
	}
}

// Under concurrent load a node 10x slower than the others gets far less
// than its third: it keeps about as many calls in flight as the others
// for ten times the latency, and so is picked about ten times less (the
// draws of two: it still wins against itself never, and against a busier
// node sometimes).
func TestLeastLoadedSendsLessToASlowNode(t *testing.T) {
	clock := useFakeClock(t)
	p := testPicker(3)
	type call struct {
		ends int64
		res  balancer.PickResult
	}
	var inflight []call
	got := map[string]int{}
	const callers = 30
	for range 30000 {
		// Keep callers calls in flight; finish the one that ends first.
		for len(inflight) < callers {
			cs := &callState{}
			cs.tried = cs.first[:0]
			res, err := p.Pick(balancer.PickInfo{Ctx: context.WithValue(context.Background(), callStateKey{}, cs)})
			if err != nil {
				t.Fatal(err)
			}
			d := time.Millisecond
			if cs.tried[0] == "node-0" {
				d = 10 * time.Millisecond
			}
			got[cs.tried[0]]++
			inflight = append(inflight, call{clock.now().Add(d).UnixNano(), res})
		}
		first := 0
		for i, c := range inflight {
			if c.ends < inflight[first].ends {
				first = i
			}
		}
		c := inflight[first]
		inflight = append(inflight[:first], inflight[first+1:]...)
		if now := clock.now().UnixNano(); c.ends > now {
			clock.advance(time.Duration(c.ends - now))
		}
		c.res.Done(balancer.DoneInfo{})
	}
	total := got["node-0"] + got["node-1"] + got["node-2"]
	if share := float64(got["node-0"]) / float64(total); share > 0.05 {
		t.Fatalf("picks %v: the slow node got %.1f%% of the calls, want under 5%%", got, 100*share)
	}
	t.Logf("picks %v", got)
}

// The kind of pick is the config's: uniform with "random".
func TestRandomPickIgnoresLoad(t *testing.T) {
	useFakeClock(t)
	p := testPicker(3)
	cfg, err := parseConfig([]byte(`{"pick":"random"}`))
	if err != nil {
		t.Fatal(err)
	}
	p.cfg = cfg
	got := pickCounts(t, p, 3000, nil) // nothing ever ends
	for id, n := range got {
		if n < 800 {
			t.Fatalf("picks %v: %s got %d, want about a third", got, id, n)
		}
	}
}

// A node that had one bad moment, and so lost every draw since, is tried
// again once its average faded, and is measured anew: it is not shunned
// for good.
func TestLeastLoadedRetriesNodeAfterBadMoment(t *testing.T) {
	clock := useFakeClock(t)
	p := testPicker(2)
	// One slow answer from node-0, fast ones from node-1.
	for _, id := range []string{"node-0", "node-1"} {
		o := p.b.outliers[id]
		d := time.Millisecond
		if id == "node-0" {
			d = 100 * time.Millisecond
		}
		o.load.sample(int64(d), clock.now().UnixNano())
	}
	fastThenAdvance := func(id string, res balancer.PickResult) {
		clock.advance(time.Millisecond)
		res.Done(balancer.DoneInfo{})
	}
	if got := pickCounts(t, p, 100, fastThenAdvance); got["node-0"] != 0 {
		t.Fatalf("picks %v: node-0 should lose draws right after its slow answer", got)
	}
	// One caller, a call a millisecond, for two seconds.
	if got := pickCounts(t, p, 2000, fastThenAdvance); got["node-0"] == 0 {
		t.Fatalf("picks %v: node-0 should be tried again once its average faded", got)
	}
	if lat := p.b.outliers["node-0"].load.latency.Load(); lat > int64(50*time.Millisecond) {
		t.Fatalf("node-0's average %v after a fast answer: want it measured anew", time.Duration(lat))
	}
}

func TestParsePick(t *testing.T) {
	for js, want := range map[string]bool{`{}`: true, `{"pick":"least_loaded"}`: true, `{"pick":"random"}`: false} {
		cfg, err := parseConfig([]byte(js))
		if err != nil || cfg.leastLoaded != want {
			t.Errorf("parseConfig(%s): leastLoaded %v, err %v; want %v", js, cfg != nil && cfg.leastLoaded, err, want)
		}
	}
	if _, err := parseConfig([]byte(`{"pick":"fastest"}`)); err == nil {
		t.Error(`parseConfig({"pick":"fastest"}) accepted an unknown mode`)
	}
}

// A node that sheds load (interceptors/shed's refusal) is alive: its
// refusals never eject it, while other UNAVAILABLE answers do.
func TestShedRefusalDoesNotEject(t *testing.T) {
	useFakeClock(t)
	p := testPicker(1)
	o := p.b.outliers["node-0"]
	shed := balancer.DoneInfo{Err: status.Error(codes.Unavailable, shedPrefix+": 12 calls in flight")}
	for range 10 {
		recordAt(o, p.cfg, shed, time.Time{})
	}
	if o.isEjected(timeNow()) {
		t.Fatal("ten shed refusals ejected the node")
	}
	for range 10 {
		recordAt(o, p.cfg, balancer.DoneInfo{Err: status.Error(codes.Unavailable, "connection refused")}, time.Time{})
	}
	if !o.isEjected(timeNow()) {
		t.Fatal("ten UNAVAILABLE failures did not eject the node: the test proves nothing")
	}
}
