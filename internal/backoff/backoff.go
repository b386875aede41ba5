// Package backoff is the one retry policy of microgrpc's loops that wait
// on something that failed (a registry, a watch, a health stream): delays
// that grow by a factor up to a cap, with jitter so that many processes do
// not retry in step, and a wait that a context or a wake-up cuts short.
// The shape is grpc-go's connection backoff (gRFC A6: factor 1.6, jitter
// 0.2).
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Factor and Jitter are grpc-go's: each delay is Factor times the one
// before, then moved by up to ±Jitter of itself.
const (
	Factor = 1.6
	Jitter = 0.2
)

// Policy is a backoff from Min to Max.
type Policy struct {
	Min, Max time.Duration
}

// randFloat is the jitter's source; tests may replace it.
var randFloat = rand.Float64

// Delay returns the wait before retry number attempt (0 for the first
// retry): Min·Factor^attempt, capped at Max, with jitter.
func (p Policy) Delay(attempt int) time.Duration {
	d := float64(p.Min)
	for i := 0; i < attempt && d < float64(p.Max); i++ {
		d *= Factor
	}
	d = min(d, float64(p.Max))
	d *= 1 - Jitter + 2*Jitter*randFloat()
	return time.Duration(d)
}

// Sleep waits d, until wake yields (nil: never) or ctx ends. It reports
// false when ctx ended.
func Sleep(ctx context.Context, d time.Duration, wake <-chan struct{}) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
	case <-wake:
	}
	return true
}
