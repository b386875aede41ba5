package http

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/microgrpc/microgrpc/broker"
)

// subscription is one Subscribe. Its deliveries, from every publisher,
// queue up in arrival order and are run by up to MaxConcurrent worker
// goroutines it owns; with one worker they run one by one in that order.
// A slow handler thus holds up only its own subscription.
type subscription struct {
	b     *httpBroker
	id    string
	topic string
	opts  broker.SubscribeOptions
	h     broker.Handler

	mu      sync.Mutex
	stopped bool
	queue   []job
	workers int // worker goroutines
	running int // of them, those in a handler
	// busy counts the deliveries taken and not answered, and the worker
	// goroutines; Unsubscribe waits for both.
	busy sync.WaitGroup
}

// job is one delivery for a worker.
type job struct {
	ctx   context.Context
	msg   *broker.Message
	reply func(result)
}

func (s *subscription) Topic() string { return s.topic }
func (s *subscription) Queue() string { return s.opts.Queue }

// Unsubscribe deregisters the subscription, refuses new deliveries (the
// publisher tries another member), and waits within ctx for the queued
// and running ones.
func (s *subscription) Unsubscribe(ctx context.Context) error {
	s.b.mu.Lock()
	delete(s.b.subs, s.id)
	s.b.mu.Unlock()
	s.mu.Lock()
	already := s.stopped
	s.stopped = true
	s.mu.Unlock()
	if already {
		return nil
	}
	err := s.b.deregister(ctx, s)
	done := make(chan struct{})
	go func() { s.busy.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		err = errors.Join(err, fmt.Errorf("http broker: deliveries still running: %w", ctx.Err()))
	}
	return err
}

// take checks and queues one delivery; reply gets its result.
func (s *subscription) take(ctx context.Context, d delivery, reply func(result)) {
	if d.topic != s.topic {
		reply(result{code: codeMalformed, err: fmt.Sprintf("message for topic %q sent to a subscription of %q", d.topic, s.topic)})
		return
	}
	if err := broker.CheckSize(d.topic, d.msg, s.b.opts.maxSize); err != nil {
		reply(result{code: codeTooLarge, err: err.Error()})
		return
	}
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		reply(result{code: codeGone, err: errGone.Error()})
		return
	}
	if len(s.queue) >= s.b.opts.maxQueued {
		n := len(s.queue)
		s.mu.Unlock()
		reply(result{code: codeBusy, err: fmt.Sprintf("%d deliveries of %q wait for a handler", n, s.topic)})
		return
	}
	s.busy.Add(1)
	s.queue = append(s.queue, job{ctx: ctx, msg: d.msg, reply: reply})
	// A worker between two jobs takes the next one; start one more only
	// for the jobs those are not already coming for.
	start := s.workers < s.opts.MaxConcurrent && len(s.queue) > s.workers-s.running
	if start {
		s.workers++
		s.busy.Add(1)
	}
	s.mu.Unlock()
	if start {
		go s.work()
	}
}

// work runs queued deliveries until there are none.
func (s *subscription) work() {
	defer s.busy.Done()
	for {
		s.mu.Lock()
		if len(s.queue) == 0 {
			s.workers--
			s.queue = nil
			s.mu.Unlock()
			return
		}
		j := s.queue[0]
		s.queue[0] = job{}
		s.queue = s.queue[1:]
		s.running++
		s.mu.Unlock()
		r := s.run(j)
		s.mu.Lock()
		s.running--
		s.mu.Unlock()
		j.reply(r)
		s.busy.Done()
	}
}

// maxErrorText bounds the handler error text sent back to a publisher.
const maxErrorText = 1024

func (s *subscription) run(j job) result {
	err := broker.Invoke(j.ctx, s.h, s.topic, j.msg, s.opts.AutoAck)
	if err == nil {
		return result{code: codeOK}
	}
	text := err.Error()
	if len(text) > maxErrorText {
		text = text[:maxErrorText] + "..."
	}
	return result{code: codeRefused, err: text}
}

var errGone = errors.New("subscription gone")

// errBusy: the subscriber has WithMaxQueued deliveries waiting already.
var errBusy = errors.New("subscriber busy")

// Subscribe registers the subscription and starts taking deliveries. The
// broker must be connected.
func (b *httpBroker) Subscribe(topic string, h broker.Handler, opts ...broker.SubscribeOption) (broker.Subscriber, error) {
	if err := broker.ValidateTopic(topic); err != nil {
		return nil, err
	}
	b.mu.Lock()
	switch {
	case b.closed:
		b.mu.Unlock()
		return nil, broker.ErrClosed
	case !b.connected:
		b.mu.Unlock()
		return nil, broker.ErrNotConnected
	}
	b.nextSub++
	s := &subscription{b: b, id: fmt.Sprintf("%s-%d", b.id, b.nextSub), topic: topic, opts: broker.NewSubscribeOptions(opts...), h: h}
	b.subs[s.id] = s
	b.mu.Unlock()
	if err := b.register(b.ctx, s); err != nil {
		b.mu.Lock()
		delete(b.subs, s.id)
		b.mu.Unlock()
		return nil, fmt.Errorf("http broker: announce subscription to %q: %w", topic, err)
	}
	return s, nil
}
