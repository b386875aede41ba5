package randomhash

// These tests drive the balancer as grpc-go would, through a fake
// balancer.ClientConn whose SubConns change state only when the test says
// so, and move the ejection clock through the timeNow hook instead of
// sleeping.

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/balancer"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	grpcresolver "google.golang.org/grpc/resolver"
	"google.golang.org/grpc/status"

	"github.com/microgrpc/microgrpc/resolver"
)

const testTimeout = 10 * time.Second

// fakeClock is the ejection clock of a test. It is atomic because pickers
// and Done callbacks read it from many goroutines.
type fakeClock struct{ ns atomic.Int64 }

// useFakeClock makes the package read time from a fake clock until the test
// ends. The test must stop every goroutine that may read the clock before
// it returns, so that the restore does not race with them.
func useFakeClock(t *testing.T) *fakeClock {
	t.Helper()
	c := &fakeClock{}
	c.ns.Store(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	old := timeNow
	timeNow = c.now
	t.Cleanup(func() { timeNow = old })
	return c
}

func (c *fakeClock) now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) advance(d time.Duration) { c.ns.Add(int64(d)) }

// fakeSubConn is a SubConn that never connects: the test pushes its states.
type fakeSubConn struct {
	balancer.SubConn // grpc-go requires the embedding; unused methods panic
	addr             string
	listener         func(balancer.SubConnState)
	health           func(balancer.SubConnState)
}

func (sc *fakeSubConn) Connect()  {}
func (sc *fakeSubConn) Shutdown() {}

// RegisterHealthListener is called by pickfirst when the SubConn turns
// READY (the balancer enables the health listener); READY counts only once
// the listener reports it.
func (sc *fakeSubConn) RegisterHealthListener(l func(balancer.SubConnState)) { sc.health = l }

// fakeCC is a balancer.ClientConn, as grpc-go's
// internal/testutils.BalancerClientConn: it records SubConns and the
// pickers the balancer publishes.
type fakeCC struct {
	balancer.ClientConn // grpc-go requires the embedding; unused methods panic

	mu       sync.Mutex
	subConns map[string]*fakeSubConn // by address, the newest
	pickers  []balancer.Picker       // every READY picker, oldest first
}

func (cc *fakeCC) NewSubConn(addrs []grpcresolver.Address, opts balancer.NewSubConnOptions) (balancer.SubConn, error) {
	sc := &fakeSubConn{addr: addrs[0].Addr, listener: opts.StateListener}
	cc.mu.Lock()
	cc.subConns[sc.addr] = sc
	cc.mu.Unlock()
	return sc, nil
}

func (cc *fakeCC) UpdateState(s balancer.State) {
	if s.ConnectivityState != connectivity.Ready {
		return
	}
	cc.mu.Lock()
	cc.pickers = append(cc.pickers, s.Picker)
	cc.mu.Unlock()
}

func (cc *fakeCC) ResolveNow(grpcresolver.ResolveNowOptions) {}

// latest returns the newest READY picker.
func (cc *fakeCC) latest(t *testing.T) balancer.Picker {
	t.Helper()
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if len(cc.pickers) == 0 {
		t.Fatal("no READY picker published")
	}
	return cc.pickers[len(cc.pickers)-1]
}

// recent returns one of the last n READY pickers, at random.
func (cc *fakeCC) recent(n int) balancer.Picker {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if len(cc.pickers) == 0 {
		return nil
	}
	n = min(n, len(cc.pickers))
	return cc.pickers[len(cc.pickers)-1-rand.IntN(n)]
}

// harness is one balancer under test. Its methods that call the balancer
// run on the test goroutine only, as grpc-go serializes them.
type harness struct {
	t  *testing.T
	cc *fakeCC
	b  *rhBalancer
	// cfg is passed with every resolver update.
	cfg *lbConfig
}

func newHarness(t *testing.T, cfgJSON string) *harness {
	t.Helper()
	cfg, err := parseConfig([]byte(cfgJSON))
	if err != nil {
		t.Fatal(err)
	}
	cc := &fakeCC{subConns: map[string]*fakeSubConn{}}
	b := builder{}.Build(cc, balancer.BuildOptions{}).(*rhBalancer)
	t.Cleanup(b.Close)
	return &harness{t: t, cc: cc, b: b, cfg: cfg}
}

func testAddr(node int) string { return fmt.Sprintf("127.0.0.1:%d", 20000+node) }
func testID(node int) string   { return fmt.Sprint("node-", node) }

// setNodes makes the resolver state exactly the given nodes and brings the
// SubConns of the nodes new to the balancer to READY.
func (h *harness) setNodes(nodes ...int) {
	h.t.Helper()
	var eps []grpcresolver.Endpoint
	for _, n := range nodes {
		addr := resolver.SetHealthCheck(grpcresolver.Address{Addr: testAddr(n)}, resolver.HealthCheck{NodeID: testID(n)})
		ep := grpcresolver.Endpoint{Addresses: []grpcresolver.Address{addr}}
		eps = append(eps, resolver.SetNodeInfo(ep, &resolver.NodeInfo{ID: testID(n), Service: "svc"}))
	}
	h.cc.mu.Lock()
	before := make(map[string]*fakeSubConn, len(h.cc.subConns))
	for a, sc := range h.cc.subConns {
		before[a] = sc
	}
	h.cc.mu.Unlock()
	if err := h.b.UpdateClientConnState(balancer.ClientConnState{
		ResolverState:  grpcresolver.State{Endpoints: eps},
		BalancerConfig: h.cfg,
	}); err != nil {
		h.t.Fatalf("UpdateClientConnState: %v", err)
	}
	h.cc.mu.Lock()
	var fresh []*fakeSubConn
	for a, sc := range h.cc.subConns {
		if before[a] != sc {
			fresh = append(fresh, sc)
		}
	}
	h.cc.mu.Unlock()
	for _, sc := range fresh {
		sc.listener(balancer.SubConnState{ConnectivityState: connectivity.Connecting})
		sc.listener(balancer.SubConnState{ConnectivityState: connectivity.Ready})
		if sc.health == nil {
			h.t.Fatalf("pickfirst registered no health listener on %s", sc.addr)
		}
		sc.health(balancer.SubConnState{ConnectivityState: connectivity.Ready})
	}
}

// pickedAddr is the address of the SubConn a pick returned.
func pickedAddr(res balancer.PickResult) string { return res.SubConn.(*fakeSubConn).addr }

// pickNode picks on p until it returns node n, and returns that pick.
func pickNode(ctx context.Context, t *testing.T, p balancer.Picker, n int) balancer.PickResult {
	t.Helper()
	for ctx.Err() == nil {
		res, err := p.Pick(balancer.PickInfo{Ctx: ctx})
		if err != nil {
			t.Fatalf("Pick: %v", err)
		}
		if pickedAddr(res) == testAddr(n) {
			return res
		}
		res.Done(balancer.DoneInfo{})
	}
	t.Fatalf("node %d never picked before the deadline", n)
	return balancer.PickResult{}
}

var errUnavailable = status.Error(codes.Unavailable, "test: node down")

// Regression test for the review finding: pruning an ejected node lowered
// the ejected-node counter without clearing the node's mark, so a later
// check of the same node through an old picker (an attempt in flight across
// the removal, finishing after the cool-down) lowered it again. At -1 every
// picker skipped ejection checks and an ejected node kept getting calls.
func TestEjectionCounterSurvivesPruneOfEjectedNode(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	clock := useFakeClock(t)
	h := newHarness(t, `{"ejectionThreshold":1,"baseEjectionTime":"1s","maxEjectionTime":"4s"}`)
	h.setNodes(0, 1, 2)
	old := h.cc.latest(t)

	// Two attempts on node-0 through the first picker; one fails and
	// ejects it, the other stays in flight.
	failing := pickNode(ctx, t, old, 0)
	inFlight := pickNode(ctx, t, old, 0)
	failing.Done(balancer.DoneInfo{Err: errUnavailable})
	if got := h.b.ejected.Load(); got != 1 {
		t.Errorf("after ejecting node-0: ejected counter %d, want 1", got)
	}

	h.setNodes(1, 2) // node-0 leaves while ejected
	if got := h.b.ejected.Load(); got != 0 {
		t.Errorf("after removing ejected node-0: ejected counter %d, want 0", got)
	}

	// The in-flight attempt ends after node-0's cool-down: the old picker
	// checks node-0's ejection again.
	clock.advance(2 * time.Second)
	inFlight.Done(balancer.DoneInfo{})
	if got := h.b.ejected.Load(); got != 0 {
		t.Errorf("after the old picker checked removed node-0: ejected counter %d, want 0", got)
	}

	cur := h.cc.latest(t)
	pickNode(ctx, t, cur, 1).Done(balancer.DoneInfo{Err: errUnavailable})
	if got := h.b.ejected.Load(); got != 1 {
		t.Errorf("after ejecting node-1: ejected counter %d, want 1", got)
	}
	for i := range 200 {
		res, err := cur.Pick(balancer.PickInfo{Ctx: ctx})
		if err != nil {
			t.Fatalf("Pick: %v", err)
		}
		if a := pickedAddr(res); a == testAddr(1) {
			t.Fatalf("pick %d went to ejected node-1 while node-2 is READY", i)
		}
		res.Done(balancer.DoneInfo{})
	}
}

// A failure reported through an old picker for a node that has left the
// resolver state must not count as an ejection: the node is in no current
// picker, and nothing would ever lower the counter again.
func TestRemovedNodeFailureNotCounted(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	useFakeClock(t)
	h := newHarness(t, `{"ejectionThreshold":1,"baseEjectionTime":"1s","maxEjectionTime":"4s"}`)
	h.setNodes(0, 1)
	old := h.cc.latest(t)
	inFlight := pickNode(ctx, t, old, 0)
	h.setNodes(1)
	inFlight.Done(balancer.DoneInfo{Err: errUnavailable})
	if got := h.b.ejected.Load(); got != 0 {
		t.Fatalf("failure on removed node-0: ejected counter %d, want 0", got)
	}
}

// An ejected node is left out until its cool-down ends on the clock, then
// gets calls again, and the counter returns to zero so that picks skip the
// ejection checks.
func TestEjectionEndsWithCoolDown(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	clock := useFakeClock(t)
	h := newHarness(t, `{"ejectionThreshold":2,"baseEjectionTime":"1s","maxEjectionTime":"4s"}`)
	h.setNodes(0, 1)
	p := h.cc.latest(t)
	for range 2 {
		pickNode(ctx, t, p, 0).Done(balancer.DoneInfo{Err: errUnavailable})
	}
	if got := h.b.ejected.Load(); got != 1 {
		t.Fatalf("after two failures: ejected counter %d, want 1", got)
	}
	for range 100 {
		res, err := p.Pick(balancer.PickInfo{Ctx: ctx})
		if err != nil {
			t.Fatalf("Pick: %v", err)
		}
		if pickedAddr(res) == testAddr(0) {
			t.Fatal("ejected node-0 picked during its cool-down")
		}
	}
	clock.advance(time.Second + time.Millisecond)
	// The first pick after the cool-down notices it and lowers the counter.
	pickNode(ctx, t, p, 0).Done(balancer.DoneInfo{})
	if got := h.b.ejected.Load(); got != 0 {
		t.Fatalf("after the cool-down: ejected counter %d, want 0", got)
	}
}

// Many goroutines pick from old and new pickers and report failures and
// successes, some long after the pick, while the test goroutine adds and
// removes nodes and moves the clock. The counter must never go negative,
// and once everything stops it must equal the number of present nodes
// that are ejected.
func TestEjectionCounterConcurrentPickers(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	clock := useFakeClock(t)
	h := newHarness(t, `{"ejectionThreshold":2,"baseEjectionTime":"1s","maxEjectionTime":"4s"}`)
	const pool = 6
	h.setNodes(0, 1, 2)

	var negative atomic.Int32 // the lowest counter value any goroutine saw
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var pending []func(balancer.DoneInfo) // attempts still in flight
			finish := func(done func(balancer.DoneInfo)) {
				if rand.IntN(3) == 0 {
					done(balancer.DoneInfo{})
				} else {
					done(balancer.DoneInfo{Err: errUnavailable})
				}
				if v := h.b.ejected.Load(); v < negative.Load() {
					negative.Store(v)
				}
			}
			defer func() {
				for _, d := range pending {
					finish(d)
				}
			}()
			for {
				select {
				case <-stop:
					return
				case <-ctx.Done():
					return
				default:
				}
				p := h.cc.recent(4)
				if p == nil {
					continue
				}
				res, err := p.Pick(balancer.PickInfo{Ctx: ctx})
				if err != nil {
					continue
				}
				if len(pending) < 16 && rand.IntN(2) == 0 {
					pending = append(pending, res.Done)
				} else {
					finish(res.Done)
				}
				if len(pending) > 0 && rand.IntN(4) == 0 {
					i := rand.IntN(len(pending))
					finish(pending[i])
					pending = append(pending[:i], pending[i+1:]...)
				}
			}
		}()
	}

	present := []int{0, 1, 2}
	for i := 0; i < 300 && ctx.Err() == nil; i++ {
		present = present[:0]
		for n := range pool {
			if rand.IntN(2) == 0 {
				present = append(present, n)
			}
		}
		if len(present) == 0 {
			present = append(present, rand.IntN(pool))
		}
		h.setNodes(present...)
		clock.advance(time.Duration(rand.IntN(400)) * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	if ctx.Err() != nil {
		t.Fatalf("test deadline: %v", ctx.Err())
	}

	if v := negative.Load(); v < 0 {
		t.Errorf("ejected counter went down to %d", v)
	}
	// Checking every present node with the final time settles cool-downs
	// that ended without a check.
	now := timeNow()
	h.b.mu.Lock()
	ejected, nodes := 0, len(h.b.outliers)
	for _, o := range h.b.outliers {
		if o.isEjected(now) {
			ejected++
		}
	}
	h.b.mu.Unlock()
	got := int(h.b.ejected.Load())
	if got != ejected || got < 0 || got > len(present) || nodes != len(present) {
		t.Fatalf("ejected counter %d; want %d (the ejected nodes), within [0, %d present nodes]; balancer tracks %d nodes",
			got, ejected, len(present), nodes)
	}
	t.Logf("%d of %d present nodes ejected at the end; %d pickers published", ejected, len(present), len(h.cc.pickers))
}

var errDeadline = status.Error(codes.DeadlineExceeded, "test: deadline")

// A node that misses deadlines while another answers (frozen: SIGSTOP, a
// long pause) is ejected like one that fails with UNAVAILABLE.
func TestDeadlinesWhileOthersAnswerEject(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	useFakeClock(t)
	h := newHarness(t, `{"ejectionThreshold":3}`)
	h.setNodes(0, 1)
	p := h.cc.latest(t)
	pickNode(ctx, t, p, 1).Done(balancer.DoneInfo{}) // node-1 answers
	for range 3 {
		pickNode(ctx, t, p, 0).Done(balancer.DoneInfo{Err: errDeadline})
	}
	if got := h.b.ejected.Load(); got != 1 {
		t.Fatalf("after three deadlines with node-1 answering: ejected counter %d, want 1", got)
	}
	for range 100 {
		res, err := p.Pick(balancer.PickInfo{Ctx: ctx})
		if err != nil {
			t.Fatal(err)
		}
		if pickedAddr(res) == testAddr(0) {
			t.Fatal("node-0, which misses its deadlines, was picked")
		}
		res.Done(balancer.DoneInfo{})
	}
}

// When no other node answers either, a deadline is the caller's, not the
// node's: nothing is ejected. Cancelled calls never count.
func TestDeadlinesEverywhereDoNotEject(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	clock := useFakeClock(t)
	h := newHarness(t, `{"ejectionThreshold":2,"pick":"random"}`) // pick0 relies on every node being drawn
	h.setNodes(0, 1)
	p := h.cc.latest(t)
	pickNode(ctx, t, p, 1).Done(balancer.DoneInfo{})
	clock.advance(answerWindow + time.Second) // node-1's answer is old now
	canceled := balancer.DoneInfo{Err: status.Error(codes.Canceled, "caller gave up")}
	// Picks of node-1 on the way end cancelled: no answer from it either.
	pick0 := func() balancer.PickResult {
		for ctx.Err() == nil {
			res, err := p.Pick(balancer.PickInfo{Ctx: ctx})
			if err != nil {
				t.Fatal(err)
			}
			if pickedAddr(res) == testAddr(0) {
				return res
			}
			res.Done(canceled)
		}
		t.Fatal("node-0 never picked")
		return balancer.PickResult{}
	}
	for range 5 {
		pick0().Done(balancer.DoneInfo{Err: errDeadline})
		pick0().Done(canceled)
	}
	if got := h.b.ejected.Load(); got != 0 {
		t.Fatalf("deadlines with no node answering: ejected counter %d, want 0", got)
	}
}

// A node ejected for missing deadlines stays out after its cool-down until
// a probe on its own connection gets an answer: the first calls to reach a
// still-frozen node would otherwise all hang until their deadlines.
func TestDeadlineEjectedNodeBackOnlyAfterProbeAnswers(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	clock := useFakeClock(t)
	var answers atomic.Bool // whether node-0 answers probes
	probes := make(chan string, 100)
	old := probeNode
	probeNode = func(_ context.Context, sc balancer.SubConn, _ string) error {
		probes <- sc.(*fakeSubConn).addr
		if answers.Load() {
			return nil
		}
		return errDeadline
	}
	t.Cleanup(func() { probeNode = old })

	h := newHarness(t, `{"ejectionThreshold":1,"baseEjectionTime":"10ms","maxEjectionTime":"20ms"}`)
	h.setNodes(0, 1)
	p := h.cc.latest(t)
	pickNode(ctx, t, p, 1).Done(balancer.DoneInfo{})
	pickNode(ctx, t, p, 0).Done(balancer.DoneInfo{Err: errDeadline})
	// Past the cool-down, with failing probes: still out.
	for range 3 {
		select {
		case addr := <-probes:
			if addr != testAddr(0) {
				t.Fatalf("probed %s, want node-0", addr)
			}
		case <-ctx.Done():
			t.Fatal("node-0 was never probed")
		}
	}
	clock.advance(time.Minute)
	for range 100 {
		res, err := p.Pick(balancer.PickInfo{Ctx: ctx})
		if err != nil {
			t.Fatal(err)
		}
		if pickedAddr(res) == testAddr(0) {
			t.Fatal("suspended node-0 picked while its probes fail")
		}
		res.Done(balancer.DoneInfo{})
	}
	// It answers: back in rotation.
	answers.Store(true)
	for {
		res, err := p.Pick(balancer.PickInfo{Ctx: ctx})
		if err != nil {
			t.Fatal(err)
		}
		res.Done(balancer.DoneInfo{})
		if pickedAddr(res) == testAddr(0) {
			break
		}
		if ctx.Err() != nil {
			t.Fatal("node-0 not back after answering a probe")
		}
	}
}
