package micro

import (
	"context"
	"errors"
	"fmt"
)

// Part is a component of a service with a life of its own that Run
// drives: pub/sub subscriptions (micro/pubsub) are one. Parts are
// attached with [Service.AddPart].
type Part interface {
	// Start is called by Run once the node is registered, and by AddPart
	// when the service runs already. An error stops Run (the node
	// deregisters) or is returned by AddPart.
	Start(ctx context.Context) error
	// Stop is called once during the stop sequence, after deregistration,
	// while the server finishes its calls, and must return within ctx
	// (the rest of the grace period). Parts that never started are
	// stopped too.
	Stop(ctx context.Context) error
}

// partState is where a service's parts are in its life.
type partState int

const (
	partsPending partState = iota // not started: Run will start them
	partsStarted                  // started: new ones start at once
	partsStopped                  // stopped: new ones never start
)

// ErrStopped is returned by AddPart once the service is stopping.
var ErrStopped = errors.New("micro: service stopping or stopped")

// AddPart attaches a part to the service under key, any comparable value
// (a package's own unexported type, as with context keys), unless one is
// attached under key already, and returns the part attached under key.
// newPart makes the part on the first call for key. A part attached
// before Run starts with the others; one attached while the service runs
// starts at once.
func (s *Service) AddPart(ctx context.Context, key any, newPart func() (Part, error)) (Part, error) {
	s.mu.Lock()
	if p, ok := s.parts[key]; ok {
		s.mu.Unlock()
		return p, nil
	}
	if s.partState == partsStopped {
		s.mu.Unlock()
		return nil, ErrStopped
	}
	p, err := newPart()
	if err != nil {
		s.mu.Unlock()
		return nil, err
	}
	if s.parts == nil {
		s.parts = map[any]Part{}
	}
	s.parts[key] = p
	s.partOrder = append(s.partOrder, p)
	start := s.partState == partsStarted
	s.mu.Unlock()
	if start {
		if err := p.Start(ctx); err != nil {
			return nil, fmt.Errorf("micro: start part: %w", err)
		}
	}
	return p, nil
}

// startParts starts every part attached so far; from then on AddPart
// starts new ones itself.
func (s *Service) startParts(ctx context.Context) error {
	s.mu.Lock()
	if s.partState != partsPending {
		s.mu.Unlock()
		return nil
	}
	s.partState = partsStarted
	parts := append([]Part(nil), s.partOrder...)
	s.mu.Unlock()
	for _, p := range parts {
		if err := p.Start(ctx); err != nil {
			return fmt.Errorf("micro: start part: %w", err)
		}
	}
	return nil
}

// stopParts stops every part within ctx, the last attached first.
func (s *Service) stopParts(ctx context.Context) {
	s.mu.Lock()
	if s.partState == partsStopped {
		s.mu.Unlock()
		return
	}
	s.partState = partsStopped
	parts := append([]Part(nil), s.partOrder...)
	s.mu.Unlock()
	for i := len(parts) - 1; i >= 0; i-- {
		if err := parts[i].Stop(ctx); err != nil {
			s.opts.logger.Warn("micro: stop part", "error", err)
		}
	}
}
