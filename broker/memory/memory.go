// Package memory is an in-process broker for tests and single-process
// programs. Publish hands the message to every plain subscriber and to one
// member per queue group (another member if it fails) at once, runs the
// handlers on the publisher's goroutine and, when there are several
// subscriptions, on one goroutine more for each, and returns nil only when
// all of them returned nil. A subscription's handler calls from all the
// publishers run MaxConcurrent at a time; the others wait their turn.
package memory

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"

	"github.com/microgrpc/microgrpc/broker"
	"github.com/microgrpc/microgrpc/broker/internal/limit"
)

// Name is the broker's name.
const Name = "memory"

// NewBroker returns an in-process broker.
func NewBroker() broker.Broker {
	return &memBroker{subs: map[string][]*sub{}}
}

type memBroker struct {
	mu        sync.RWMutex
	connected bool
	closed    bool
	subs      map[string][]*sub // by topic
	inflight  sync.WaitGroup    // Publishes in progress: Disconnect waits for them
}

type sub struct {
	b     *memBroker
	topic string
	opts  broker.SubscribeOptions
	h     broker.Handler
	limit limit.Limiter

	mu      sync.Mutex
	stopped bool
	// running counts the deliveries taken and not finished, waiting for a
	// slot included. It is added to only under mu while not stopped, so
	// once Unsubscribe set stopped, its Wait sees every delivery that can
	// still run.
	running sync.WaitGroup
}

// errGone is a delivery to a subscription that was unsubscribed after the
// Publish found it: for that Publish it is no longer a subscriber.
var errGone = errors.New("unsubscribed")

func (s *sub) Topic() string { return s.topic }
func (s *sub) Queue() string { return s.opts.Queue }

// Unsubscribe stops deliveries and waits within ctx for those in progress.
func (s *sub) Unsubscribe(ctx context.Context) error {
	s.b.mu.Lock()
	list := s.b.subs[s.topic]
	for i, x := range list {
		if x == s {
			s.b.subs[s.topic] = append(list[:i:i], list[i+1:]...)
			break
		}
	}
	s.b.mu.Unlock()
	s.stop()
	done := make(chan struct{})
	go func() { s.running.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("memory broker: unsubscribe %q: handlers still running: %w", s.topic, ctx.Err())
	}
}

func (s *sub) stop() {
	s.mu.Lock()
	s.stopped = true
	s.mu.Unlock()
}

func (b *memBroker) String() string { return Name }

func (b *memBroker) Connect(context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return broker.ErrClosed
	}
	b.connected = true
	return nil
}

// Disconnect unsubscribes everything and waits within ctx for the
// Publishes in progress, and so for their handlers.
func (b *memBroker) Disconnect(ctx context.Context) error {
	b.mu.Lock()
	b.closed, b.connected = true, false
	subs := b.subs
	b.subs = map[string][]*sub{}
	b.mu.Unlock()
	for _, list := range subs {
		for _, s := range list {
			s.stop()
		}
	}
	done := make(chan struct{})
	go func() { b.inflight.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("memory broker: handlers still running: %w", ctx.Err())
	}
}

func (b *memBroker) Subscribe(topic string, h broker.Handler, opts ...broker.SubscribeOption) (broker.Subscriber, error) {
	if err := broker.ValidateTopic(topic); err != nil {
		return nil, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case b.closed:
		return nil, broker.ErrClosed
	case !b.connected:
		return nil, broker.ErrNotConnected
	}
	o := broker.NewSubscribeOptions(opts...)
	if len(o.AllowPublishers) > 0 {
		return nil, broker.ErrPublisherIdentity
	}
	s := &sub{b: b, topic: topic, opts: o, h: h, limit: limit.New(o.MaxConcurrent)}
	b.subs[topic] = append(b.subs[topic], s)
	return s, nil
}

func (b *memBroker) Publish(ctx context.Context, topic string, m *broker.Message, opts ...broker.PublishOption) error {
	if err := broker.ValidateTopic(topic); err != nil {
		return err
	}
	msg := broker.NewPublishOptions(opts...).Prepare(m)
	if err := broker.CheckSize(topic, msg, broker.DefaultMaxMessageSize); err != nil {
		return err
	}
	b.mu.RLock()
	switch {
	case b.closed:
		b.mu.RUnlock()
		return broker.ErrClosed
	case !b.connected:
		b.mu.RUnlock()
		return broker.ErrNotConnected
	}
	var jobs []func() error
	groups := map[string][]*sub{}
	for _, s := range b.subs[topic] {
		if s.opts.Queue == "" {
			jobs = append(jobs, func() error {
				if err := s.deliver(ctx, msg); err != nil && !errors.Is(err, errGone) {
					return fmt.Errorf("%w: topic %q: subscriber: %v", broker.ErrNotDelivered, topic, err)
				}
				return nil
			})
		} else {
			groups[s.opts.Queue] = append(groups[s.opts.Queue], s)
		}
	}
	for q, members := range groups {
		jobs = append(jobs, func() error {
			if err := deliverOne(ctx, members, msg); err != nil {
				return fmt.Errorf("%w: topic %q queue group %q: no member took it: %v", broker.ErrNotDelivered, topic, q, err)
			}
			return nil
		})
	}
	b.inflight.Add(1)
	b.mu.RUnlock()
	defer b.inflight.Done()
	if len(jobs) == 0 {
		return nil
	}
	// All at once, so that a slow subscription holds up only itself; the
	// last one on this goroutine, so a lone subscriber costs no goroutine.
	errs := make([]error, len(jobs))
	var wg sync.WaitGroup
	for i, job := range jobs[:len(jobs)-1] {
		wg.Go(func() { errs[i] = job() })
	}
	errs[len(jobs)-1] = jobs[len(jobs)-1]()
	wg.Wait()
	return errors.Join(errs...)
}

// deliverOne tries the members in random order until one accepts. Members
// unsubscribed meanwhile are skipped; when all of them were, the group is
// gone and that is no error.
func deliverOne(ctx context.Context, members []*sub, m *broker.Message) error {
	var errs []error
	for _, i := range rand.Perm(len(members)) {
		err := members[i].deliver(ctx, m)
		if err == nil {
			return nil
		}
		if !errors.Is(err, errGone) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// deliver runs the handler once a slot of the subscription's MaxConcurrent
// is free, unless the subscription stopped first.
func (s *sub) deliver(ctx context.Context, m *broker.Message) error {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return errGone
	}
	s.running.Add(1)
	s.mu.Unlock()
	defer s.running.Done()
	if err := s.limit.Acquire(ctx); err != nil {
		return err
	}
	defer s.limit.Release()
	// Stopped while waiting for the slot: the delivery never started.
	s.mu.Lock()
	stopped := s.stopped
	s.mu.Unlock()
	if stopped {
		return errGone
	}
	return broker.Invoke(ctx, s.h, s.topic, m.Clone(), s.opts.AutoAck)
}
