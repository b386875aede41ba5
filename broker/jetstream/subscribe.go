package jetstream

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/microgrpc/microgrpc/broker"
)

// repairEvery bounds how often a subscription checks that its consumer
// (and stream) still exist, and how often it tries to make them again.
const repairEvery = time.Second

type subscription struct {
	b      *jsBroker
	js     jetstream.JetStream
	topic  string
	stream string
	cfg    jetstream.ConsumerConfig
	key    string // the durable's place in b.ordinals; "" when it took none
	ord    int
	opts   broker.SubscribeOptions
	h      broker.Handler
	work   chan *delivery // to the workers, when MaxConcurrent > 1

	// ctx is the handlers' context: it ends when Unsubscribe gives up on
	// them. stop ends when Unsubscribe begins to stop: the repair loop
	// ends, and a delivery waiting for a handler slot gives up.
	ctx    context.Context
	cancel context.CancelFunc
	stop   context.Context
	halt   context.CancelFunc
	// beat ends the in-progress heartbeat, once the handlers are done (or
	// given up on): a handler that Unsubscribe waits for keeps its message.
	beat   context.Context
	unbeat context.CancelFunc
	lost   chan struct{} // buffer 1: the consume reported an error; check the consumer
	done   chan struct{} // closed when the repair loop returned

	mu       sync.Mutex
	cc       jetstream.ConsumeContext
	stopped  bool           // no handler starts any more
	handlers sync.WaitGroup // handler calls; Add only under mu while !stopped
	flight   inflight       // deliveries received and not answered yet

	once sync.Once
}

func (s *subscription) Topic() string { return s.topic }
func (s *subscription) Queue() string { return s.opts.Queue }

// durable names a subscription's consumer; see the package doc. kind
// keeps queue groups and subscribers apart ("queue_workers" is never a
// service's), ord the subscriptions of one subscriber to one topic
// ("sub_billing", then "sub2_billing"), and a stream that holds several
// topics gets the topic too.
func durable(kind string, ord int, name, topic string, shared bool) string {
	d := kind
	if ord > 1 {
		d += strconv.Itoa(ord)
	}
	d += "_" + sanitize(name)
	if shared {
		d += "_" + sanitizeHashed(topic)
	}
	return d
}

// Subscribe makes (or finds) the subscription's consumer and starts
// consuming: see the package doc for which consumer.
func (b *jsBroker) Subscribe(topic string, h broker.Handler, opts ...broker.SubscribeOption) (broker.Subscriber, error) {
	if err := broker.ValidateTopic(topic); err != nil {
		return nil, err
	}
	_, js, err := b.conn()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	stream, err := b.ensureStream(ctx, js, topic)
	if err != nil {
		return nil, err
	}
	o := broker.NewSubscribeOptions(opts...)
	if len(o.AllowPublishers) > 0 {
		return nil, broker.ErrPublisherIdentity
	}
	cfg := jetstream.ConsumerConfig{
		FilterSubject: topic,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       b.opts.ackWait,
		// The broker counts deliveries itself (see refuse): the server
		// keeps redelivering a message whose subscriber died, however
		// often, so nothing stored is dropped unseen.
		MaxDeliver:    -1,
		MaxAckPending: max(1000, 2*o.MaxConcurrent),
		DeliverPolicy: jetstream.DeliverAllPolicy,
	}
	s := &subscription{b: b, js: js, topic: topic, stream: stream.Name, opts: o, h: h, work: make(chan *delivery),
		lost: make(chan struct{}, 1), done: make(chan struct{})}
	shared := len(stream.Subjects) != 1 || stream.Subjects[0] != topic
	switch {
	case o.Queue != "":
		cfg.Durable = durable("queue", 1, o.Queue, topic, shared)
	case o.Name != "" && !o.Ephemeral:
		s.key = stream.Name + " " + durable("sub", 1, o.Name, topic, shared)
		s.ord = b.takeOrdinal(s.key)
		cfg.Durable = durable("sub", s.ord, o.Name, topic, shared)
	default:
		// Named, so that it can be made again if it is lost; the server
		// removes it a while after it stops being used.
		cfg.Name = "eph_" + nuid.Next()
		cfg.DeliverPolicy = jetstream.DeliverNewPolicy
		cfg.InactiveThreshold = time.Minute
	}
	s.cfg = cfg
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.stop, s.halt = context.WithCancel(context.Background())
	s.beat, s.unbeat = context.WithCancel(context.Background())
	s.flight.init()
	fail := func(err error) (broker.Subscriber, error) {
		s.halt()
		s.unbeat()
		s.cancel()
		b.releaseOrdinal(s.key, s.ord)
		return nil, err
	}
	cc, err := s.start(ctx)
	if err != nil {
		return fail(err)
	}
	s.cc = cc
	b.mu.Lock()
	closed := b.closed
	if !closed {
		b.subs[s] = struct{}{}
		b.wg.Add(2) // before Disconnect can wait
	}
	b.mu.Unlock()
	if closed {
		cc.Stop()
		return fail(broker.ErrClosed)
	}
	go func() { defer b.wg.Done(); s.repairLoop() }()
	go func() { defer b.wg.Done(); s.flight.heartbeat(s.beat, b.opts.ackWait) }()
	if o.MaxConcurrent > 1 {
		// Not in b.wg: a worker in a handler that ignores its context
		// must not hold up Disconnect (s.handlers counts the calls).
		for range o.MaxConcurrent {
			go s.worker()
		}
	}
	return s, nil
}

// start makes the consumer (again) and starts consuming it.
func (s *subscription) start(ctx context.Context) (jetstream.ConsumeContext, error) {
	cons, err := s.js.CreateOrUpdateConsumer(ctx, s.stream, s.cfg)
	if err != nil {
		return nil, fmt.Errorf("jetstream broker: consumer %q on stream %s for %q: %w", s.consumerName(), s.stream, s.topic, err)
	}
	log := s.b.opts.conn.Logger
	cc, err := cons.Consume(s.deliver,
		jetstream.PullMaxMessages(max(64, 2*s.opts.MaxConcurrent)),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			if s.stop.Err() != nil {
				return
			}
			if !errors.Is(err, jetstream.ErrNoHeartbeat) {
				log.Warn("jetstream broker: consume", "topic", s.topic, "consumer", s.consumerName(), "error", err)
			}
			select {
			case s.lost <- struct{}{}:
			default:
			}
		}))
	if err != nil {
		return nil, fmt.Errorf("jetstream broker: consume %q: %w", s.topic, err)
	}
	return cc, nil
}

func (s *subscription) consumerName() string {
	if s.cfg.Durable != "" {
		return s.cfg.Durable
	}
	return s.cfg.Name
}

// repairLoop makes the consumer, and its stream, again when they are lost
// (memory storage and a server restart, an operator, a cluster losing
// the stream): after an error of the consume, or when the consume stopped
// by itself, it checks that the consumer is there, at most once per
// repairEvery, until it is.
func (s *subscription) repairLoop() {
	defer close(s.done)
	t := time.NewTimer(0)
	t.Stop()
	defer t.Stop()
	for {
		s.mu.Lock()
		closed := s.cc.Closed()
		s.mu.Unlock()
		select {
		case <-s.stop.Done():
			return
		case <-s.lost:
		case <-closed:
		}
		// Wait before each look: a stream being deleted answers as gone
		// while the server still removes it, and one made again in that
		// moment was seen to take no messages.
		for {
			t.Reset(repairEvery)
			select {
			case <-s.stop.Done():
				return
			case <-t.C:
			}
			if s.repair() {
				break
			}
		}
		// Errors that came meanwhile are answered by the repair.
		select {
		case <-s.lost:
		default:
		}
	}
}

// repair reports whether the consumer is there and consumed, making it
// (and its stream) again if it is gone.
func (s *subscription) repair() bool {
	ctx, cancel := context.WithTimeout(s.stop, 5*time.Second)
	defer cancel()
	s.mu.Lock()
	cc := s.cc
	s.mu.Unlock()
	stoppedByItself := false
	select {
	case <-cc.Closed():
		stoppedByItself = true
	default:
	}
	if !stoppedByItself {
		_, err := s.js.Consumer(ctx, s.stream, s.consumerName())
		switch {
		case err == nil:
			return true
		case !errors.Is(err, jetstream.ErrConsumerNotFound) && !errors.Is(err, jetstream.ErrStreamNotFound):
			return false // the server does not answer; ask again later
		}
	}
	if err := s.b.remakeStream(ctx, s.js, s.b.streamFor(s.topic)); err != nil {
		s.b.opts.conn.Logger.Warn("jetstream broker: making a lost stream again", "topic", s.topic, "stream", s.stream, "error", err)
		return false
	}
	next, err := s.start(ctx)
	if err != nil {
		s.b.opts.conn.Logger.Warn("jetstream broker: making a lost consumer again", "topic", s.topic, "error", err)
		return false
	}
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		next.Stop()
		return true
	}
	s.cc = next
	s.mu.Unlock()
	cc.Stop()
	s.b.opts.conn.Logger.Info("jetstream broker: consumer made again", "topic", s.topic, "consumer", s.consumerName())
	return true
}

// deliver is the consume callback: it starts the handler for one
// delivery, on a goroutine of its own when the subscription may run
// several at once. Once the subscription is stopping it starts nothing:
// the message stays unanswered and comes again after the ack wait.
func (s *subscription) deliver(m jetstream.Msg) {
	d := s.flight.add(m)
	if s.opts.MaxConcurrent == 1 {
		if !s.begin() {
			s.flight.remove(d)
			return
		}
		defer s.handlers.Done()
		s.handle(d)
		return
	}
	if !s.begin() {
		s.flight.remove(d)
		return
	}
	select {
	case s.work <- d:
	case <-s.stop.Done():
		s.flight.remove(d)
		s.handlers.Done()
	}
}

// worker handles deliveries until the subscription stops: MaxConcurrent
// of them run per subscription, so a delivery costs a hand-off, not a
// goroutine whose stack grows again for every handler call.
func (s *subscription) worker() {
	for {
		select {
		case d := <-s.work:
			s.handle(d)
			s.handlers.Done()
		case <-s.stop.Done():
			return
		}
	}
}

// begin counts a handler call about to start, unless the subscription is
// stopping.
func (s *subscription) begin() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return false
	}
	s.handlers.Add(1)
	return true
}

// Unsubscribe stops taking messages and waits, within ctx, for those being
// handled; what is not handled stays in the stream (a durable consumer
// resumes there). When ctx ends first, the handlers still running see
// their context end and Unsubscribe returns without them (a handler that
// ignores its context must not hold up the caller's shutdown); what they
// leave unacknowledged comes again after the ack wait. Nothing starts
// after Unsubscribe returns.
func (s *subscription) Unsubscribe(ctx context.Context) error {
	var err error
	s.once.Do(func() {
		s.b.mu.Lock()
		delete(s.b.subs, s)
		s.b.mu.Unlock()
		s.mu.Lock()
		cc := s.cc
		s.mu.Unlock()
		cc.Drain()
		select {
		case <-cc.Closed():
		case <-ctx.Done():
			err = fmt.Errorf("jetstream broker: unsubscribe %q: %w", s.topic, ctx.Err())
		}
		// From here on no handler starts: a delivery still on its way
		// (or waiting for a slot) is left unanswered. Every Add happened
		// under mu before this, so Wait below cannot race one.
		s.mu.Lock()
		s.stopped = true
		cc = s.cc // the repair loop may have replaced it
		s.mu.Unlock()
		s.halt()
		cc.Stop()
		<-s.done
		done := make(chan struct{})
		go func() { s.handlers.Wait(); close(done) }()
		select {
		case <-done:
		case <-ctx.Done():
			s.cancel() // handlers see their context end
			if err == nil {
				err = fmt.Errorf("jetstream broker: unsubscribe %q: handlers still running: %w", s.topic, ctx.Err())
			}
		}
		s.cancel()
		s.unbeat()
		s.b.releaseOrdinal(s.key, s.ord)
	})
	return err
}

// handle runs the handler for one delivery and answers the server.
func (s *subscription) handle(d *delivery) {
	defer s.flight.remove(d)
	m := d.m
	hdr := m.Headers()
	bm := &broker.Message{Header: make(map[string]string, len(hdr)), Body: m.Data()}
	for k, v := range hdr {
		if len(v) > 0 {
			bm.Header[strings.ToLower(k)] = v[0]
		}
	}
	err := broker.Invoke(s.ctx, s.h, s.topic, bm, s.opts.AutoAck)
	if err == nil {
		if aerr := m.Ack(); aerr != nil {
			s.b.opts.conn.Logger.Warn("jetstream broker: ack failed; the message will come again", "topic", s.topic, "error", aerr)
		}
		return
	}
	s.refuse(m, bm, err)
}

// refuse answers a refused delivery: again later with backoff, or, after
// the last allowed delivery or for a message the handler rejects for
// good, terminated and dead-lettered.
func (s *subscription) refuse(m jetstream.Msg, bm *broker.Message, herr error) {
	log := s.b.opts.conn.Logger
	n := uint64(1)
	if md, err := m.Metadata(); err == nil {
		n = md.NumDelivered
	}
	if n < uint64(s.b.opts.maxDeliver) && !errors.Is(herr, broker.ErrRejected) {
		m.NakWithDelay(s.b.backoff(n))
		return
	}
	if dl := s.b.opts.deadLetter; dl != "" {
		if err := s.deadLetter(bm, herr, n); err != nil {
			// Not terminated: it comes again, and dead-lettering is tried
			// again, rather than being lost.
			log.Error("jetstream broker: dead-letter failed; the message will come again", "topic", s.topic, "dead_letter", dl, "error", err)
			m.NakWithDelay(s.b.opts.backoffMax)
			return
		}
	}
	m.TermWithReason(truncate(herr.Error(), 256))
	log.Error("jetstream broker: message terminated", "topic", s.topic, "consumer", s.consumerName(),
		"deliveries", n, "dead_letter", s.b.opts.deadLetter, "error", herr)
}

func (s *subscription) deadLetter(bm *broker.Message, herr error, n uint64) error {
	ctx, cancel := context.WithTimeout(s.b.ctx, 10*time.Second)
	defer cancel()
	dl := s.b.opts.deadLetter
	out := &broker.Message{Header: make(map[string]string, len(bm.Header)+3), Body: bm.Body}
	for k, v := range bm.Header {
		out.Header[k] = v
	}
	out.Header[HeaderDeadLetterTopic] = s.topic
	out.Header[HeaderDeadLetterError] = truncate(herr.Error(), 1024)
	out.Header[HeaderDeliveries] = strconv.FormatUint(n, 10)
	return s.b.store(ctx, s.js, dl, out)
}

// backoff is the delay before delivery n+1 of a refused message.
func (b *jsBroker) backoff(n uint64) time.Duration {
	d := b.opts.backoffMin
	for i := uint64(1); i < n && d < b.opts.backoffMax; i++ {
		d *= 2
	}
	return min(d, b.opts.backoffMax)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
