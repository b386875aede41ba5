// Package memory is an in-process broker for tests and single-process
// programs. Publish calls the handlers on the publisher's goroutine, one
// per plain subscriber and one member per queue group (another member if
// it fails), and returns nil only when all of them returned nil.
package memory

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"

	"github.com/microgrpc/microgrpc/broker"
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
	inflight  sync.WaitGroup
}

type sub struct {
	b     *memBroker
	topic string
	opts  broker.SubscribeOptions
	h     broker.Handler
}

func (s *sub) Topic() string { return s.topic }
func (s *sub) Queue() string { return s.opts.Queue }

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
	return nil
}

func (b *memBroker) String() string  { return Name }
func (b *memBroker) Address() string { return "" }

func (b *memBroker) Connect(context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return broker.ErrClosed
	}
	b.connected = true
	return nil
}

func (b *memBroker) Disconnect(ctx context.Context) error {
	b.mu.Lock()
	b.closed, b.connected = true, false
	b.subs = map[string][]*sub{}
	b.mu.Unlock()
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
	if b.closed {
		return nil, broker.ErrClosed
	}
	s := &sub{b: b, topic: topic, opts: broker.NewSubscribeOptions(opts...), h: h}
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
	plain := []*sub{}
	groups := map[string][]*sub{}
	for _, s := range b.subs[topic] {
		if s.opts.Queue == "" {
			plain = append(plain, s)
		} else {
			groups[s.opts.Queue] = append(groups[s.opts.Queue], s)
		}
	}
	b.inflight.Add(1)
	b.mu.RUnlock()
	defer b.inflight.Done()

	var errs []error
	for _, s := range plain {
		if err := s.deliver(ctx, msg); err != nil {
			errs = append(errs, fmt.Errorf("%w: topic %q: subscriber: %v", broker.ErrNotDelivered, topic, err))
		}
	}
	for q, members := range groups {
		if err := deliverOne(ctx, members, msg); err != nil {
			errs = append(errs, fmt.Errorf("%w: topic %q queue group %q: no member took it: %v", broker.ErrNotDelivered, topic, q, err))
		}
	}
	return errors.Join(errs...)
}

// deliverOne tries the members in random order until one accepts.
func deliverOne(ctx context.Context, members []*sub, m *broker.Message) error {
	var errs []error
	for _, i := range rand.Perm(len(members)) {
		err := members[i].deliver(ctx, m)
		if err == nil {
			return nil
		}
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (s *sub) deliver(ctx context.Context, m *broker.Message) error {
	return broker.Invoke(ctx, s.h, s.topic, m.Clone(), s.opts.AutoAck)
}
