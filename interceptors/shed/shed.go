package shed

import (
	"context"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// RefusedMessage begins the message of every refused call's status.
const RefusedMessage = "shed: node overloaded"

// PushbackTrailer is the trailer a refused call carries, with the value
// "0": grpc-go's retry then retries at once rather than after its backoff.
const PushbackTrailer = "grpc-retry-pushback-ms"

// Defaults of the options.
const (
	DefaultInitialLimit = 100
	DefaultMinLimit     = 20
	DefaultMaxLimit     = 1000
	DefaultTolerance    = 1.5
	DefaultSmoothing    = 0.2
	DefaultWindow       = 100 * time.Millisecond
	DefaultMinSamples   = 10
	DefaultLongWindow   = 100
)

var (
	errRefused = status.Error(codes.Unavailable, RefusedMessage+": retry on another node")
	pushback   = metadata.Pairs(PushbackTrailer, "0")
)

type config struct {
	initial, min, max int
	tolerance         float64
	smoothing         float64
	window            time.Duration
	minSamples        int64
	longWindow        float64
	shedStreams       bool
	exempt            []string
	now               func() time.Time
}

// Option configures a Limiter.
type Option func(*config)

// WithInitialLimit sets the limit a new Limiter starts with (bounded by the
// minimum and maximum).
func WithInitialLimit(n int) Option { return func(c *config) { c.initial = n } }

// WithMinLimit sets the lowest limit (default DefaultMinLimit): however
// slow the calls get, this many run at once.
func WithMinLimit(n int) Option { return func(c *config) { c.min = n } }

// WithMaxLimit sets the highest limit (default DefaultMaxLimit). 0 refuses
// every call that is not exempt (for tests and for draining a node).
func WithMaxLimit(n int) Option { return func(c *config) { c.max = n } }

// WithTolerance sets how much above the long-term RTT the short-term RTT
// may be before the limit shrinks (default DefaultTolerance, at least 1).
func WithTolerance(f float64) Option { return func(c *config) { c.tolerance = f } }

// WithSmoothing sets how far the limit moves towards its new value each
// window, in (0, 1] (default DefaultSmoothing).
func WithSmoothing(f float64) Option { return func(c *config) { c.smoothing = f } }

// WithWindow sets how often the limit is updated (default DefaultWindow)
// and the fewest calls a window needs (default DefaultMinSamples).
func WithWindow(d time.Duration, minSamples int) Option {
	return func(c *config) { c.window, c.minSamples = d, int64(minSamples) }
}

// WithLongWindow sets over how many windows the long-term RTT rises
// towards a higher short-term RTT (default DefaultLongWindow).
func WithLongWindow(n int) Option { return func(c *config) { c.longWindow = float64(n) } }

// ShedStreams, when on, refuses a new stream while the unary calls in
// flight are at the limit (default off: streams are never refused).
// Streams are never counted nor measured.
func ShedStreams(on bool) Option { return func(c *config) { c.shedStreams = on } }

// WithExempt adds full-method prefixes ("/pkg.Service/") that are never
// shed nor measured, besides health and reflection.
func WithExempt(prefixes ...string) Option {
	return func(c *config) { c.exempt = append(c.exempt, prefixes...) }
}

// WithClock sets the clock the limiter measures with (tests).
func WithClock(now func() time.Time) Option { return func(c *config) { c.now = now } }

// Limiter is an adaptive limit on a server's unary calls in flight. Its
// methods are safe for concurrent use.
type Limiter struct {
	cfg config

	inflight atomic.Int64
	limit    atomic.Int64
	// peak is the most calls in flight during the current window.
	peak    atomic.Int64
	sumNs   atomic.Int64
	count   atomic.Int64
	refused atomic.Uint64
	// windowStart is the clock's UnixNano when the window began.
	windowStart atomic.Int64

	// mu guards the float state; a call that finds it taken skips the
	// update, it never waits.
	mu     sync.Mutex
	flimit float64
	long   float64
}

// New returns a Limiter.
func New(opts ...Option) *Limiter {
	c := config{
		initial: DefaultInitialLimit, min: DefaultMinLimit, max: DefaultMaxLimit,
		tolerance: DefaultTolerance, smoothing: DefaultSmoothing,
		window: DefaultWindow, minSamples: DefaultMinSamples, longWindow: DefaultLongWindow,
		now: time.Now,
	}
	for _, o := range opts {
		o(&c)
	}
	if c.max < 0 {
		c.max = 0
	}
	if c.min > c.max {
		c.min = c.max
	}
	if c.max > 0 && c.min < 1 {
		// A limit of 0 admits no call, so no sample would ever raise it.
		c.min = 1
	}
	c.initial = min(max(c.initial, c.min), c.max)
	c.tolerance = max(c.tolerance, 1)
	if c.smoothing <= 0 || c.smoothing > 1 {
		c.smoothing = DefaultSmoothing
	}
	c.longWindow = max(c.longWindow, 1)
	c.minSamples = max(c.minSamples, 1)
	l := &Limiter{cfg: c, flimit: float64(c.initial)}
	l.limit.Store(int64(c.initial))
	l.windowStart.Store(c.now().UnixNano())
	return l
}

// Limit returns the current limit.
func (l *Limiter) Limit() int { return int(l.limit.Load()) }

// InFlight returns the unary calls running now that count against the
// limit.
func (l *Limiter) InFlight() int { return int(l.inflight.Load()) }

// Refused returns how many calls and streams were refused so far.
func (l *Limiter) Refused() uint64 { return l.refused.Load() }

// exempt reports whether method is never shed.
func (l *Limiter) exempt(method string) bool {
	if strings.HasPrefix(method, "/grpc.health.v1.Health/") || strings.HasPrefix(method, "/grpc.reflection.") {
		return true
	}
	for _, p := range l.cfg.exempt {
		if strings.HasPrefix(method, p) {
			return true
		}
	}
	return false
}

// acquire takes a slot, or reports false when the limit is reached.
func (l *Limiter) acquire() bool {
	n := l.inflight.Add(1)
	if n > l.limit.Load() {
		l.inflight.Add(-1)
		l.refused.Add(1)
		return false
	}
	if n > l.peak.Load() {
		l.peak.Store(n) // racy maximum: close enough for "was the limit used"
	}
	return true
}

// release frees the slot of a call that started at start and records its
// latency.
func (l *Limiter) release(start time.Time) {
	end := l.cfg.now()
	l.inflight.Add(-1)
	l.sumNs.Add(int64(end.Sub(start)))
	c := l.count.Add(1)
	if c >= l.cfg.minSamples && end.UnixNano()-l.windowStart.Load() >= int64(l.cfg.window) && l.mu.TryLock() {
		l.updateLocked(end)
		l.mu.Unlock()
	}
}

// updateLocked ends the window at end and moves the limit. Caller holds
// l.mu.
func (l *Limiter) updateLocked(end time.Time) {
	if end.UnixNano()-l.windowStart.Load() < int64(l.cfg.window) {
		return // another call ended this window already
	}
	c := l.count.Swap(0)
	sum := l.sumNs.Swap(0)
	peak := l.peak.Swap(l.inflight.Load())
	l.windowStart.Store(end.UnixNano())
	if c <= 0 || sum <= 0 {
		return
	}
	short := float64(sum) / float64(c)
	// Saturated: the calls reached the limit, so a higher latency may be
	// of our own making (overload) and must not become the baseline.
	saturated := peak >= l.limit.Load()
	switch {
	case l.long == 0 || short < l.long:
		l.long = short
	case !saturated:
		l.long += (short - l.long) / l.cfg.longWindow
	}
	gradient := math.Max(0.5, math.Min(1, l.cfg.tolerance*l.long/short))
	if gradient == 1 && float64(peak) < l.flimit/2 {
		return // the load, not the server, bounded the calls
	}
	next := l.flimit*gradient + math.Sqrt(l.flimit)
	f := l.flimit*(1-l.cfg.smoothing) + next*l.cfg.smoothing
	f = math.Max(float64(l.cfg.min), math.Min(float64(l.cfg.max), f))
	l.flimit = f
	l.limit.Store(int64(f))
}

// refuse sets the pushback trailer and returns the refusal.
func refuse(ctx context.Context) error {
	_ = grpc.SetTrailer(ctx, pushback)
	return errRefused
}

// UnaryServerInterceptor sheds and measures unary calls. Put it first (the
// outermost interceptor), so that a refused call costs nothing else.
func (l *Limiter) UnaryServerInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if l.exempt(info.FullMethod) {
			return handler(ctx, req)
		}
		if !l.acquire() {
			return nil, refuse(ctx)
		}
		start := l.cfg.now()
		defer l.release(start)
		return handler(ctx, req)
	}
}

// StreamServerInterceptor refuses new streams while the unary calls in
// flight are at the limit, when ShedStreams is on; otherwise it passes
// every stream through. Streams are never counted nor measured.
func (l *Limiter) StreamServerInterceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if l.cfg.shedStreams && !l.exempt(info.FullMethod) && l.inflight.Load() >= l.limit.Load() {
			l.refused.Add(1)
			ss.SetTrailer(pushback)
			return errRefused
		}
		return handler(srv, ss)
	}
}

// ServerOptions returns the interceptors of a new Limiter as server
// options, for a program that makes its own *grpc.Server. Pass them before
// other interceptor options, so that the limiter runs first.
func ServerOptions(opts ...Option) []grpc.ServerOption {
	l := New(opts...)
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(l.UnaryServerInterceptor()),
		grpc.ChainStreamInterceptor(l.StreamServerInterceptor()),
	}
}
