package throttle

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Defaults of a Throttle.
const (
	DefaultK       = 2.0
	DefaultWindow  = 5 * time.Second
	DefaultBuckets = 10
)

// RefusedMessage begins the message of a call the Throttle refused.
const RefusedMessage = "throttle: the service refused most recent calls; this call was not sent"

// Option changes a Throttle.
type Option func(*Throttle)

// WithK sets K: the service may refuse a share of 1-1/K of the calls
// before the client refuses any (K 2: half). Values below 1 are taken as 1.
func WithK(k float64) Option { return func(t *Throttle) { t.k = max(k, 1) } }

// WithWindow sets how long answers are remembered (default DefaultWindow).
func WithWindow(d time.Duration) Option {
	return func(t *Throttle) {
		if d > 0 {
			t.bucket = d / DefaultBuckets
		}
	}
}

// WithClock sets the clock (default time.Now), for tests.
func WithClock(now func() time.Time) Option { return func(t *Throttle) { t.now = now } }

// Throttle counts one service's answers and refuses calls locally while
// the service refuses most of them. Make one with New; it is safe for
// concurrent use.
type Throttle struct {
	k      float64
	bucket time.Duration
	now    func() time.Time
	rand   func() float64

	mu sync.Mutex
	// buckets[n%DefaultBuckets] holds the counts of bucket number n
	// (time / bucket) while its at is n.
	buckets [DefaultBuckets]counts
}

type counts struct {
	requests, accepts int64
	at                int64 // bucket number the counts belong to
}

// New returns a Throttle.
func New(opts ...Option) *Throttle {
	t := &Throttle{k: DefaultK, bucket: DefaultWindow / DefaultBuckets, now: time.Now, rand: rand.Float64}
	for _, o := range opts {
		o(t)
	}
	return t
}

// totals sums the buckets still in the window at bucket number n. Caller
// holds t.mu.
func (t *Throttle) totals(n int64) (requests, accepts int64) {
	for i := range t.buckets {
		if b := &t.buckets[i]; n-b.at < DefaultBuckets {
			requests += b.requests
			accepts += b.accepts
		}
	}
	return requests, accepts
}

// Probability returns the chance that a new call is refused now.
func (t *Throttle) Probability() float64 {
	n := t.now().UnixNano() / int64(t.bucket)
	t.mu.Lock()
	r, a := t.totals(n)
	t.mu.Unlock()
	return probability(r, a, t.k)
}

func probability(requests, accepts int64, k float64) float64 {
	return max(0, (float64(requests)-k*float64(accepts))/float64(requests+1))
}

// allow decides whether a call may be sent.
func (t *Throttle) allow() bool {
	p := t.Probability()
	return p == 0 || t.rand() >= p
}

// add counts an answer.
func (t *Throttle) add(accepted bool) {
	n := t.now().UnixNano() / int64(t.bucket)
	t.mu.Lock()
	b := &t.buckets[n%DefaultBuckets]
	if b.at != n {
		*b = counts{at: n}
	}
	b.requests++
	if accepted {
		b.accepts++
	}
	t.mu.Unlock()
}

// observe counts the outcome err of a call made with ctx, if it is the
// service's answer.
func (t *Throttle) observe(ctx context.Context, err error) {
	if err == nil || errors.Is(err, io.EOF) {
		t.add(true)
		return
	}
	if ctx.Err() != nil {
		return // the caller gave up (cancelled, or its deadline passed)
	}
	switch status.Code(err) {
	case codes.Canceled:
		return
	case codes.Unavailable, codes.ResourceExhausted, codes.DeadlineExceeded:
		t.add(false)
	default:
		t.add(true)
	}
}

func (t *Throttle) refusal() error {
	return status.Errorf(codes.Unavailable, "%s (refusing %.0f%% of calls)", RefusedMessage, 100*t.Probability())
}

// UnaryClientInterceptor throttles unary calls.
func (t *Throttle) UnaryClientInterceptor() grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		if !t.allow() {
			return t.refusal()
		}
		err := invoker(ctx, method, req, reply, cc, opts...)
		t.observe(ctx, err)
		return err
	}
}

// StreamClientInterceptor throttles new streams. A stream counts once: by
// its first message, or by how it ended before one.
func (t *Throttle) StreamClientInterceptor() grpc.StreamClientInterceptor {
	return func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		if !t.allow() {
			return nil, t.refusal()
		}
		s, err := streamer(ctx, desc, cc, method, opts...)
		if err != nil {
			t.observe(ctx, err)
			return nil, err
		}
		return &stream{ClientStream: s, t: t, ctx: ctx}, nil
	}
}

type stream struct {
	grpc.ClientStream
	t       *Throttle
	ctx     context.Context
	counted sync.Once
}

func (s *stream) RecvMsg(m any) error {
	err := s.ClientStream.RecvMsg(m)
	s.counted.Do(func() { s.t.observe(s.ctx, err) })
	return err
}

// DialOptions returns the dial options that install a new Throttle, made
// with opts, for both kinds of call.
func DialOptions(opts ...Option) []grpc.DialOption {
	t := New(opts...)
	return []grpc.DialOption{
		grpc.WithChainUnaryInterceptor(t.UnaryClientInterceptor()),
		grpc.WithChainStreamInterceptor(t.StreamClientInterceptor()),
	}
}
