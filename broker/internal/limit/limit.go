// Package limit bounds how many deliveries to one subscription run at
// once, for broker.SubscribeOptions.MaxConcurrent (memory; jetstream, nats
// and http bound their workers themselves).
package limit

import "context"

// Limiter is a counting semaphore. The zero value is not usable; make one
// with New.
type Limiter chan struct{}

// New returns a limiter of n slots (at least 1).
func New(n int) Limiter { return make(Limiter, max(n, 1)) }

// Acquire takes a slot, waiting within ctx for one to free up.
func (l Limiter) Acquire(ctx context.Context) error {
	select {
	case l <- struct{}{}:
		return nil
	default:
	}
	select {
	case l <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Release frees a slot taken by Acquire.
func (l Limiter) Release() { <-l }
