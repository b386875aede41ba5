package direct

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"google.golang.org/grpc/codes"

	"github.com/microgrpc/microgrpc/broker"
)

// subscription is one Subscribe. Its deliveries, from every publisher,
// queue up in arrival order and are run by up to MaxConcurrent worker
// goroutines it owns; with one worker they run one by one in that order.
// A slow handler thus holds up only its own subscription.
type subscription struct {
	b       *directBroker
	id      string
	topic   string
	address string // announced in the registry
	opts    broker.SubscribeOptions
	h       broker.Handler

	mu       sync.Mutex
	stopped  bool // no new deliveries
	cut      bool // the drain's deadline passed: queued ones are refused
	queue    []job
	queued   int // bytes of the queued jobs
	workers  int // worker goroutines
	running  int // of them, those in a handler
	cancels  map[*job]context.CancelFunc
	workerWG sync.WaitGroup
}

// job is one delivery for a worker.
type job struct {
	ctx    context.Context
	cancel context.CancelFunc // ends ctx: the drain's deadline passed
	msg    *broker.Message
	size   int
	reply  func(result)
}

// result is what became of a delivery, as the wire carries it.
type result struct {
	code codes.Code
	msg  string
}

func (r result) error() error {
	if r.code == codes.OK {
		return nil
	}
	return fmt.Errorf("%s: %s", r.code, r.msg)
}

func (s *subscription) Topic() string { return s.topic }
func (s *subscription) Queue() string { return s.opts.Queue }

// Unsubscribe deregisters the subscription, refuses new deliveries (the
// publisher tries another member), and lets the queued and running ones
// finish within ctx. When ctx ends first, the queued ones that did not
// start are refused (their publishers hear UNAVAILABLE and never see them
// acknowledged), the running ones have their contexts cancelled, and
// Unsubscribe returns: no handler starts after that.
func (s *subscription) Unsubscribe(ctx context.Context) error {
	s.b.mu.Lock()
	delete(s.b.subs, s.id)
	last := len(s.b.subs) == 0
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
	go func() { s.workerWG.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		s.mu.Lock()
		s.cut = true
		refused := s.queue
		s.queue, s.queued = nil, 0
		for _, cancel := range s.cancels {
			cancel()
		}
		s.mu.Unlock()
		for _, j := range refused {
			j.reply(result{code: codes.Unavailable, msg: "subscriber stopped before handling it"})
		}
		err = errors.Join(err, fmt.Errorf("direct broker: deliveries of %q still running: %w", s.topic, ctx.Err()))
	}
	if last {
		// Nothing left to deliver to: publishers' streams may go, so
		// that the node's server can stop gracefully.
		s.b.goAwayIfIdle()
	}
	return err
}

// take checks and queues one delivery; reply gets its result once.
// cancel ends ctx, for a handler still running when the drain's deadline
// passes.
func (s *subscription) take(ctx context.Context, cancel context.CancelFunc, topic string, m *broker.Message, reply func(result)) {
	if topic != s.topic {
		reply(result{code: codes.InvalidArgument, msg: fmt.Sprintf("message for topic %q sent to a subscription of %q", topic, s.topic)})
		return
	}
	if err := broker.CheckSize(topic, m, s.b.opts.maxSize); err != nil {
		reply(result{code: codes.InvalidArgument, msg: err.Error()})
		return
	}
	size := m.Size() + jobOverhead
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		reply(result{code: codes.Unavailable, msg: errGone.Error()})
		return
	}
	if s.queued+size > s.b.opts.maxQueuedBytes && len(s.queue) > 0 {
		n, q := len(s.queue), s.queued
		s.mu.Unlock()
		reply(result{code: codes.ResourceExhausted, msg: fmt.Sprintf("%s: %d deliveries (%d bytes) of %q wait for a handler", errBusy, n, q, s.topic)})
		return
	}
	s.queue = append(s.queue, job{ctx: ctx, cancel: cancel, msg: m, size: size, reply: reply})
	s.queued += size
	// A worker between two jobs takes the next one; start one more only
	// for the jobs those are not already coming for.
	start := s.workers < s.opts.MaxConcurrent && len(s.queue) > s.workers-s.running
	if start {
		s.workers++
		s.workerWG.Add(1)
	}
	s.mu.Unlock()
	if start {
		go s.work()
	}
}

// work runs queued deliveries until there are none.
func (s *subscription) work() {
	defer s.workerWG.Done()
	for {
		s.mu.Lock()
		if len(s.queue) == 0 || s.cut {
			s.workers--
			s.mu.Unlock()
			return
		}
		j := s.queue[0]
		s.queue[0] = job{}
		s.queue = s.queue[1:]
		if len(s.queue) == 0 {
			s.queue = s.queue[:0:0] // let the backing array go
		}
		s.queued -= j.size
		s.running++
		if s.cancels == nil {
			s.cancels = map[*job]context.CancelFunc{}
		}
		s.cancels[&j] = j.cancel
		s.mu.Unlock()
		r := s.run(j.ctx, j)
		s.mu.Lock()
		delete(s.cancels, &j)
		s.running--
		s.mu.Unlock()
		j.reply(r)
	}
}

// jobOverhead is what a queued delivery counts on top of its message, so
// that the bound on queued bytes also bounds how many empty messages wait.
const jobOverhead = 256

// maxErrorText bounds the handler error text sent back to a publisher.
const maxErrorText = 1024

func (s *subscription) run(ctx context.Context, j job) result {
	err := broker.Invoke(ctx, s.h, s.topic, j.msg, s.opts.AutoAck)
	switch {
	case err == nil:
		return result{code: codes.OK}
	case ctx.Err() != nil && errors.Is(err, ctx.Err()):
		return result{code: codes.DeadlineExceeded, msg: cut(err.Error())}
	}
	return result{code: codes.Aborted, msg: cut(err.Error())}
}

func cut(text string) string {
	if len(text) > maxErrorText {
		return text[:maxErrorText] + "..."
	}
	return text
}

var (
	errGone = errors.New("subscription gone")
	// errBusy: the subscription has too many bytes of deliveries waiting.
	errBusy = errors.New("subscriber busy")
)

// Subscribe registers the subscription and starts taking deliveries. The
// broker must be connected; with WithServer, the node must be serving.
func (b *directBroker) Subscribe(topic string, h broker.Handler, opts ...broker.SubscribeOption) (broker.Subscriber, error) {
	if err := broker.ValidateTopic(topic); err != nil {
		return nil, err
	}
	if err := b.secure(); err != nil {
		return nil, err
	}
	o := broker.NewSubscribeOptions(opts...)
	if len(o.AllowPublishers) > 0 && !b.opts.mutualTLS {
		return nil, fmt.Errorf("direct broker: subscription to %q admits only some publishers, which needs mutual TLS (--tls_ca_file) to know who they are", topic)
	}
	address, err := b.advertised()
	if err != nil {
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
	s := &subscription{b: b, id: fmt.Sprintf("%s-%d", b.id, b.nextSub), topic: topic, address: address, opts: o, h: h}
	b.subs[s.id] = s
	b.mu.Unlock()
	if err := b.register(b.ctx, s); err != nil {
		b.mu.Lock()
		delete(b.subs, s.id)
		b.mu.Unlock()
		return nil, fmt.Errorf("direct broker: announce subscription to %q: %w", topic, err)
	}
	return s, nil
}

// admits reports whether the publisher identity id may deliver to s.
func (s *subscription) admits(id string, known bool) bool {
	if len(s.opts.AllowPublishers) == 0 {
		return true
	}
	return known && slices.Contains(s.opts.AllowPublishers, id)
}
