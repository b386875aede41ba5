package randomhash

import (
	"math"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/balancer"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Least-loaded picks. With pick "least_loaded" (the default) a call
// without a hash key goes to the less loaded of two nodes drawn at random
// from those it may use ("power of two choices"), not to a uniformly
// random one. A node's load is its calls in flight from this client, plus
// one, times a moving average of its latency: a node that is slow, or
// whose calls do not come back at all (a frozen process), soon loses
// every draw, where a uniform pick keeps sending it a third of the calls
// and, with a frozen node, ends with every caller waiting on it.
//
// Two draws rather than the least loaded of all: every client sees only
// its own calls, and the least loaded node of many clients would get
// their calls all at once (a herd); two draws keep some randomness and
// still avoid the worst node.
//
// The state is per node (nodeLoad, in the node's outlier, so it survives
// picker rebuilds) and made of atomics, read and written by picks and
// their Done callbacks without a lock:
//   - inflight: raised by a pick, lowered by its Done (grpc-go calls Done
//     once for every pick it used, also when the attempt failed);
//   - started: the sum of the start times of the calls in flight, kept the
//     same way, for their mean age: calls in flight for longer than the
//     average latency count at their age, so that a node whose calls stop
//     coming back loses its draws within moments;
//   - latency: the moving average of answered attempts' latency in
//     nanoseconds, updated by Done with a load and a store (two Dones at
//     once may lose one sample: it is an estimate);
//   - sampled: when latency was last updated, in unix nanoseconds.
//
// A failed attempt (UNAVAILABLE, a missed deadline) counts as twice the
// average or its own duration, whichever is longer, so that a node that
// fails fast (one that sheds load) does not look fast. A cancelled call
// and a stream (its length is the caller's business) leave the average
// alone. A node that lost every draw for a while keeps the average of
// its last, bad moments; so the average of a node with nothing in flight
// fades with its age (loadFade), until the node wins a draw and is
// measured again.

// Pick modes (the "pick" field of the policy's config).
const (
	PickLeastLoaded = "least_loaded"
	PickRandom      = "random"
)

const (
	// latencyWeight is the weight of a new sample in the average, at
	// least; a sample after a long quiet time weighs more (see sample).
	latencyWeight = 0.1
	// latencyHalfLife: a sample that comes this long after the previous
	// one weighs half.
	latencyHalfLife = 500 * time.Millisecond
	// loadFadeAfter and loadFade: the average of a node with nothing in
	// flight, older than loadFadeAfter, counts e times less every loadFade.
	loadFadeAfter = 10 * time.Millisecond
	loadFade      = 250 * time.Millisecond
)

// nodeLoad is one node's load as this client sees it.
type nodeLoad struct {
	inflight atomic.Int64
	// started sums the start times of the calls in flight, in
	// microseconds since loadEpoch, so that their mean age is known.
	started atomic.Int64
	latency atomic.Int64 // moving average, nanoseconds; 0: not measured
	sampled atomic.Int64 // unix nanoseconds of the last sample
}

// loadEpoch is the origin of nodeLoad.started, so that the sum of a
// million start times stays far from overflow for years.
var loadEpoch = time.Now().UnixNano()

// sinceEpoch is unix nanoseconds t in microseconds since loadEpoch.
func sinceEpoch(t int64) int64 { return (t - loadEpoch) / 1e3 }

// cost is the node's load at now (unix nanoseconds).
func (l *nodeLoad) cost(now int64) float64 {
	n := l.inflight.Load()
	lat := float64(l.latency.Load()) // 0: not measured, wins on equal calls in flight
	if n > 0 {
		// Calls in flight for longer than the node used to take count
		// at their age: a node whose calls stopped coming back (frozen)
		// loses draws within moments, measured or not.
		if age := float64(sinceEpoch(now)-l.started.Load()/n) * 1e3; age > lat {
			lat = age
		}
	} else {
		// Nothing in flight: the average fades with its age, so that a
		// node that lost every draw since a bad moment is tried again
		// (within about a second of a 50x worse moment) and measured anew.
		if age := now - l.sampled.Load(); age > int64(loadFadeAfter) {
			lat *= math.Exp(-float64(age) / float64(loadFade))
		}
	}
	return float64(n+1) * lat
}

// sample adds an attempt that took d (nanoseconds) and ended at now.
func (l *nodeLoad) sample(d, now int64) {
	prev := l.latency.Load()
	if prev == 0 {
		l.latency.Store(max(d, 1))
		l.sampled.Store(now)
		return
	}
	// The longer since the last sample, the more the new one weighs: the
	// average of a node picked rarely follows what it does now.
	gap := float64(now - l.sampled.Swap(now))
	w := latencyWeight
	if gap > 0 {
		w = max(w, gap/(gap+float64(latencyHalfLife)))
	}
	l.latency.Store(max(int64(float64(prev)*(1-w)+float64(d)*w), 1))
}

// loadDone is the Done callback of a least-loaded pick. Picks take them
// from a pool, so that a pick allocates nothing; fn is bound once.
type loadDone struct {
	o      *outlier
	cfg    *lbConfig
	start  int64
	stream bool
	inner  func(balancer.DoneInfo)
	fn     func(balancer.DoneInfo)
}

// loadDonePool's New is set in init: done puts into the pool, which a
// literal could not name.
var loadDonePool sync.Pool

func init() {
	loadDonePool.New = func() any {
		d := &loadDone{}
		d.fn = d.done
		return d
	}
}

func newLoadDone(o *outlier, cfg *lbConfig, start int64, stream bool, inner func(balancer.DoneInfo)) func(balancer.DoneInfo) {
	d := loadDonePool.Get().(*loadDone)
	d.o, d.cfg, d.start, d.stream, d.inner = o, cfg, start, stream, inner
	o.load.started.Add(sinceEpoch(start))
	o.load.inflight.Add(1)
	return d.fn
}

func (d *loadDone) done(di balancer.DoneInfo) {
	o, cfg, start, stream, inner := d.o, d.cfg, d.start, d.stream, d.inner
	*d = loadDone{fn: d.fn}
	loadDonePool.Put(d)
	o.load.inflight.Add(-1)
	o.load.started.Add(-sinceEpoch(start))
	var at time.Time
	if !stream {
		at = timeNow()
		now := at.UnixNano()
		took := now - start
		switch status.Code(di.Err) {
		case codes.Canceled:
		case codes.Unavailable, codes.DeadlineExceeded:
			o.load.sample(max(took, 2*o.load.latency.Load()), now)
		default:
			o.load.sample(took, now)
		}
	}
	recordAt(o, cfg, di, at)
	if inner != nil {
		inner(di)
	}
}

// lessLoaded returns the less loaded of a and b; a on a tie.
func lessLoaded(a, b *child, now int64) *child {
	if b.outlier.load.cost(now) < a.outlier.load.cost(now) {
		return b
	}
	return a
}
