package shed

import (
	"sync"
	"testing"
	"time"
)

// fakeClock is a clock that moves only when told to.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// curve is a server whose latency is base while at most capacity calls
// run, and grows linearly above it.
type curve struct {
	base     time.Duration
	capacity int
}

func (c curve) latency(inflight int) time.Duration {
	if inflight <= c.capacity {
		return c.base
	}
	return c.base * time.Duration(inflight) / time.Duration(c.capacity)
}

// drive runs rounds: callers try to start a call at once; the admitted
// ones all take the curve's latency for their number, then end.
func drive(l *Limiter, clk *fakeClock, cv curve, callers, rounds int) {
	for range rounds {
		admitted := 0
		for range callers {
			if l.acquire() {
				admitted++
			}
		}
		start := clk.now()
		clk.advance(cv.latency(admitted))
		for range admitted {
			l.release(start)
		}
	}
}

func newTestLimiter(clk *fakeClock, opts ...Option) *Limiter {
	return New(append([]Option{WithClock(clk.now), WithWindow(10*time.Millisecond, 1),
		WithMinLimit(1), WithMaxLimit(1000), WithInitialLimit(10)}, opts...)...)
}

func TestLimitConvergesNearCapacity(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1000, 0)}
	l := newTestLimiter(clk)
	cv := curve{base: 10 * time.Millisecond, capacity: 50}
	drive(l, clk, cv, 500, 300)
	got := l.Limit()
	// Tolerance 1.5 lets latency rise to 1.5x before the limit shrinks.
	if got < cv.capacity || got > cv.capacity*2 {
		t.Fatalf("limit %d after 300 windows, want within [%d, %d]", got, cv.capacity, cv.capacity*2)
	}
	t.Logf("limit %d at capacity %d", got, cv.capacity)
}

func TestLimitFollowsLatency(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1000, 0)}
	l := newTestLimiter(clk)
	cv := curve{base: 10 * time.Millisecond, capacity: 100}
	drive(l, clk, cv, 500, 300)
	high := l.Limit()
	// The server loses half its capacity: latency rises at the same load.
	cv.capacity = 40
	drive(l, clk, cv, 500, 100)
	low := l.Limit()
	if low >= high*3/4 || low > cv.capacity*2 {
		t.Fatalf("limit %d after capacity fell 100 -> 40 (was %d): did not shrink", low, high)
	}
	// Capacity comes back: latency falls, the limit grows back.
	cv.capacity = 100
	drive(l, clk, cv, 500, 300)
	back := l.Limit()
	if back < 100 || back <= low {
		t.Fatalf("limit %d after capacity came back to 100 (was %d at 40)", back, low)
	}
	t.Logf("limit %d at 100, %d at 40, %d at 100 again", high, low, back)
}

func TestAppLimitedDoesNotGrow(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1000, 0)}
	l := newTestLimiter(clk, WithInitialLimit(100))
	drive(l, clk, curve{base: time.Millisecond, capacity: 1000}, 10, 100)
	if got := l.Limit(); got != 100 {
		t.Fatalf("limit %d after 10 callers only, want 100 unchanged", got)
	}
}

func TestLimitBounds(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1000, 0)}
	l := newTestLimiter(clk, WithMinLimit(30), WithMaxLimit(60))
	cv := curve{base: 10 * time.Millisecond, capacity: 10000}
	drive(l, clk, cv, 500, 200)
	if got := l.Limit(); got != 60 {
		t.Fatalf("limit %d with capacity to spare, want the maximum 60", got)
	}
	cv.capacity = 5
	drive(l, clk, cv, 500, 200)
	if got := l.Limit(); got != 30 {
		t.Fatalf("limit %d far above capacity, want the minimum 30", got)
	}
	cv.capacity = 10000
	drive(l, clk, cv, 500, 200)
	if got := l.Limit(); got != 60 {
		t.Fatalf("limit %d with capacity to spare, want the maximum 60", got)
	}
}

func TestAcceptPathDoesNotAllocate(t *testing.T) {
	l := New(WithMaxLimit(10))
	allocs := testing.AllocsPerRun(1000, func() {
		if l.acquire() {
			l.release(time.Now())
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per call", allocs)
	}
}
