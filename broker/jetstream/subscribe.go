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

	"github.com/microgrpc/microgrpc/broker"
	"github.com/microgrpc/microgrpc/broker/internal/limit"
)

type subscription struct {
	b        *jsBroker
	js       jetstream.JetStream
	topic    string
	consumer string // durable name, or "" for an ephemeral consumer
	opts     broker.SubscribeOptions
	h        broker.Handler
	cc       jetstream.ConsumeContext
	limit    limit.Limiter
	ctx      context.Context // handlers' context: ends when the subscription is stopped hard
	cancel   context.CancelFunc
	once     sync.Once
	handlers sync.WaitGroup // handler calls on their own goroutines
}

func (s *subscription) Topic() string { return s.topic }
func (s *subscription) Queue() string { return s.opts.Queue }

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
	name := o.Queue
	if name == "" && !o.Ephemeral {
		name = o.Name
	}
	if name != "" {
		cfg.Durable = sanitize(name)
		if len(stream.Subjects) != 1 || stream.Subjects[0] != topic {
			// A stream shared by several topics: one consumer per topic.
			cfg.Durable += "_" + sanitize(topic)
		}
	} else {
		cfg.DeliverPolicy = jetstream.DeliverNewPolicy
		cfg.InactiveThreshold = time.Minute
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, stream.Name, cfg)
	if err != nil {
		return nil, fmt.Errorf("jetstream broker: consumer %q on stream %s for %q: %w", cfg.Durable, stream.Name, topic, err)
	}
	s := &subscription{b: b, js: js, topic: topic, consumer: cfg.Durable, opts: o, h: h, limit: limit.New(o.MaxConcurrent)}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	handle := s.handle
	if o.MaxConcurrent > 1 {
		handle = func(m jetstream.Msg) {
			_ = s.limit.Acquire(context.Background())
			s.handlers.Add(1)
			go func() {
				defer s.handlers.Done()
				defer s.limit.Release()
				s.handle(m)
			}()
		}
	}
	log := b.opts.conn.Logger
	s.cc, err = cons.Consume(handle,
		jetstream.PullMaxMessages(max(16, 2*o.MaxConcurrent)),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			if !errors.Is(err, jetstream.ErrNoHeartbeat) || s.ctx.Err() == nil {
				log.Warn("jetstream broker: consume", "topic", topic, "consumer", cfg.Durable, "error", err)
			}
		}))
	if err != nil {
		s.cancel()
		return nil, fmt.Errorf("jetstream broker: consume %q: %w", topic, err)
	}
	b.mu.Lock()
	closed := b.closed
	if !closed {
		b.subs[s] = struct{}{}
	}
	b.mu.Unlock()
	if closed {
		s.cc.Stop()
		s.cancel()
		return nil, broker.ErrClosed
	}
	return s, nil
}

// Unsubscribe stops taking messages and waits, within ctx, for those being
// handled; what is not handled stays in the stream (a durable consumer
// resumes there). When ctx ends first, the handlers still running see
// their context end and Unsubscribe returns without them (a handler that
// ignores its context must not hold up the caller's shutdown); what they
// leave unacknowledged comes again after the ack wait.
func (s *subscription) Unsubscribe(ctx context.Context) error {
	var err error
	s.once.Do(func() {
		s.b.mu.Lock()
		delete(s.b.subs, s)
		s.b.mu.Unlock()
		s.cc.Drain()
		select {
		case <-s.cc.Closed():
		case <-ctx.Done():
			s.cc.Stop()
			err = fmt.Errorf("jetstream broker: unsubscribe %q: %w", s.topic, ctx.Err())
		}
		done := make(chan struct{})
		go func() { s.handlers.Wait(); close(done) }()
		select {
		case <-done:
		case <-ctx.Done():
			s.cancel() // handlers see their context end
			err = errors.Join(err, fmt.Errorf("jetstream broker: unsubscribe %q: handlers still running: %w", s.topic, ctx.Err()))
		}
		s.cancel()
	})
	return err
}

// handle runs the handler for one delivery and answers the server.
func (s *subscription) handle(m jetstream.Msg) {
	hdr := m.Headers()
	bm := &broker.Message{Header: make(map[string]string, len(hdr)), Body: m.Data()}
	for k := range hdr {
		bm.Header[strings.ToLower(k)] = hdr.Get(k)
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
	log.Error("jetstream broker: message terminated", "topic", s.topic, "consumer", s.consumer,
		"deliveries", n, "dead_letter", s.b.opts.deadLetter, "error", herr)
}

func (s *subscription) deadLetter(bm *broker.Message, herr error, n uint64) error {
	ctx, cancel := context.WithTimeout(s.b.ctx, 10*time.Second)
	defer cancel()
	dl := s.b.opts.deadLetter
	if _, err := s.b.ensureStream(ctx, s.js, dl); err != nil {
		return err
	}
	out := &broker.Message{Header: make(map[string]string, len(bm.Header)+3), Body: bm.Body}
	for k, v := range bm.Header {
		out.Header[k] = v
	}
	out.Header[HeaderDeadLetterTopic] = s.topic
	out.Header[HeaderDeadLetterError] = truncate(herr.Error(), 1024)
	out.Header[HeaderDeliveries] = strconv.FormatUint(n, 10)
	return s.b.publish(ctx, s.js, dl, out)
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
