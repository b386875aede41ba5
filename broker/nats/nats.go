// Package nats is the NATS broker: github.com/nats-io/nats.go v1.55.0 on
// NATS core. Queue groups are NATS queue subscriptions; headers
// (content-type, metadata) travel as NATS headers; reconnects are handled
// by nats.go and logged here; Disconnect drains (subscriptions finish the
// messages they have, publishes are flushed).
//
// NATS core is at-most-once: Publish returns once the server has the
// message, and a handler's error cannot reach the publisher; it is logged.
// On a cluster (several URLs, any of which will do) a server that crashes
// takes the messages in flight through it along: a test that killed one
// of three mid-stream lost 1.8% of the acknowledged messages. What must
// not be lost goes through broker/jetstream.
// Concurrent publishes share the round trip that proves it (group commit):
// one PING written after their messages, answered by one PONG, covers them
// all, so the promise costs one round trip per batch, not per message.
// PublishAsync (broker.PublishAsync) writes the message at once and
// delivers the result of the flush after it on a channel; a publisher
// with many in flight gets them covered by far fewer flushes than as many
// waiting goroutines would.
//
// Deliveries to one subscription run concurrently up to MaxConcurrent;
// with MaxConcurrent(1) they run one at a time in the order the server
// sent them. "Ack" here means the handler returned nil (and, with
// DisableAutoAck, called Ack); a refused message is logged with its topic.
//
// Select it with MICRO_BROKER=nats and MICRO_BROKER_ADDRESS=nats://host:4222.
package nats

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"strings"
	"sync"
	"time"

	natsgo "github.com/nats-io/nats.go"

	"github.com/microgrpc/microgrpc/broker"
	"github.com/microgrpc/microgrpc/broker/internal/natsconn"
	"github.com/microgrpc/microgrpc/internal/envconfig"
)

// Name is the broker's name.
const Name = "nats"

// EnvAddress holds comma-separated NATS URLs.
const EnvAddress = "MICRO_BROKER_ADDRESS"

// URLsFromEnv returns the URLs in $MICRO_BROKER_ADDRESS, or nil.
func URLsFromEnv(lookup func(string) (string, bool)) []string {
	v, _ := envconfig.BrokerAddress.Lookup(lookup)
	return envconfig.SplitList(v)
}

type options struct {
	conn natsconn.Options
}

// Option configures NewBroker.
type Option func(*options)

// WithURLs sets the server URLs (default nats://127.0.0.1:4222).
func WithURLs(urls ...string) Option { return func(o *options) { o.conn.URLs = urls } }

// WithTLS sets the TLS configuration.
func WithTLS(c *tls.Config) Option { return func(o *options) { o.conn.TLS = c } }

// WithUserPassword authenticates with a user and password.
func WithUserPassword(user, password string) Option {
	return func(o *options) { o.conn.User, o.conn.Password = user, password }
}

// WithToken authenticates with a token.
func WithToken(token string) Option { return func(o *options) { o.conn.Token = token } }

// WithCredentialsFile authenticates with a NATS .creds file.
func WithCredentialsFile(path string) Option { return func(o *options) { o.conn.CredsFile = path } }

// WithConnectTimeout bounds connecting.
func WithConnectTimeout(d time.Duration) Option {
	return func(o *options) { o.conn.ConnectTimeout = d }
}

// WithLogger sets the logger for reconnects and refused messages.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) {
		if l != nil {
			o.conn.Logger = l
		}
	}
}

// NewBroker returns a NATS broker; Connect dials.
func NewBroker(opts ...Option) broker.Broker {
	o := options{conn: natsconn.Defaults()}
	for _, opt := range opts {
		opt(&o)
	}
	return &natsBroker{opts: o}
}

type natsBroker struct {
	opts options

	mu     sync.Mutex
	nc     *natsgo.Conn
	closed bool
	subs   map[*subscription]struct{}
	flush  *flusher
}

func (b *natsBroker) String() string { return Name }

func (b *natsBroker) Connect(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case b.closed:
		return broker.ErrClosed
	case b.nc != nil:
		return nil
	}
	nc, err := natsconn.Connect(Name, b.opts.conn)
	if err != nil {
		return err
	}
	b.nc = nc
	b.subs = map[*subscription]struct{}{}
	b.flush = newFlusher(nc)
	return nil
}

// Disconnect drains: subscriptions stop taking messages and finish the
// ones they hold, pending publishes are flushed, then the connection
// closes; bounded by ctx.
func (b *natsBroker) Disconnect(ctx context.Context) error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	nc := b.nc
	fl := b.flush
	b.mu.Unlock()
	if nc == nil {
		return nil
	}
	defer fl.stop()
	// Whatever happens below, the connection ends closed: no callback
	// hands a worker anything any more, so the workers can go once they
	// finished what they hold.
	defer func() {
		b.mu.Lock()
		subs := b.subs
		b.mu.Unlock()
		for s := range subs {
			s.stopWorkers()
		}
	}()
	closed := make(chan struct{})
	nc.SetClosedHandler(func(*natsgo.Conn) { close(closed) })
	if err := nc.Drain(); err != nil {
		nc.Close()
		return fmt.Errorf("nats broker: drain: %w", err)
	}
	select {
	case <-closed:
	case <-ctx.Done():
		nc.Close()
		return fmt.Errorf("nats broker: drain: %w", ctx.Err())
	}
	// The connection is closed: no callback starts a handler any more;
	// wait for the handlers still running.
	b.mu.Lock()
	subs := maps.Clone(b.subs)
	b.mu.Unlock()
	done := make(chan struct{})
	go func() {
		for s := range subs {
			s.stopWorkers()
			s.handlers.Wait()
		}
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("nats broker: drain: handlers still running: %w", ctx.Err())
	}
}

func (b *natsBroker) conn() (*natsgo.Conn, error) {
	nc, _, err := b.connFlusher()
	return nc, err
}

func (b *natsBroker) connFlusher() (*natsgo.Conn, *flusher, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case b.closed:
		return nil, nil, broker.ErrClosed
	case b.nc == nil:
		return nil, nil, broker.ErrNotConnected
	}
	return b.nc, b.flush, nil
}

// Publish sends m with the other publishes of the moment and waits for
// the flush that covers them, so that a nil error means the NATS server
// has it.
func (b *natsBroker) Publish(ctx context.Context, topic string, m *broker.Message, opts ...broker.PublishOption) error {
	nm, fl, err := b.prepare(topic, m, opts)
	if err != nil {
		return err
	}
	if err := fl.publish(ctx, nm); err != nil {
		return publishError(topic, err)
	}
	return nil
}

// PublishAsync is Publish without the wait (broker.AsyncPublisher): m
// joins the next flush and the channel receives what Publish would have
// returned, nil once the server has m. A publisher that keeps several
// publishes in flight lets one round trip cover many more of them than
// waiting goroutines can. ctx is checked now; the result comes within the
// flush timeout whatever ctx does later.
func (b *natsBroker) PublishAsync(ctx context.Context, topic string, m *broker.Message, opts ...broker.PublishOption) <-chan error {
	ack := make(chan error, 1)
	if err := ctx.Err(); err != nil {
		ack <- publishError(topic, err)
		return ack
	}
	nm, fl, err := b.prepare(topic, m, opts)
	if err != nil {
		ack <- err
		return ack
	}
	fl.publishAsync(nm, ack)
	return ack
}

// prepare checks a publish and builds its NATS message.
func (b *natsBroker) prepare(topic string, m *broker.Message, opts []broker.PublishOption) (*natsgo.Msg, *flusher, error) {
	if err := broker.ValidateTopic(topic); err != nil {
		return nil, nil, err
	}
	nc, fl, err := b.connFlusher()
	if err != nil {
		return nil, nil, err
	}
	msg := broker.NewPublishOptions(opts...).Prepare(m)
	if err := broker.CheckSize(topic, msg, int(nc.MaxPayload())); err != nil {
		return nil, nil, err
	}
	return newMsg(topic, msg.Body, msg.Header), fl, nil
}

// publishError says which publish failed, and maps the server's size
// limit to broker.ErrMessageTooLarge.
func publishError(topic string, err error) error {
	if errors.Is(err, natsgo.ErrMaxPayload) {
		return fmt.Errorf("%w: %v", broker.ErrMessageTooLarge, err)
	}
	return fmt.Errorf("nats broker: publish to %q: %w", topic, err)
}

// lowerKey is strings.ToLower for a header key nats.go canonicalized,
// without the allocation for the one every message has.
func lowerKey(k string) string {
	if k == "Content-Type" {
		return "content-type"
	}
	return strings.ToLower(k)
}

type subscription struct {
	b     *natsBroker
	topic string
	opts  broker.SubscribeOptions
	sub   *natsgo.Subscription
	// With MaxConcurrent > 1, the callback hands messages to up to that
	// many worker goroutines through queue, starting them as the load asks
	// for them; they live until the subscription ends, so a busy
	// subscription pays no goroutine per message. handlers counts them;
	// Unsubscribe and Disconnect stop them after the drain (no callback
	// runs after it) and wait, within their ctx.
	queue    chan *natsgo.Msg
	done     chan struct{} // closed by stopWorkers
	qmu      sync.Mutex    // stopped, workers, idle, queued
	stopped  bool
	workers  int
	idle     int
	queued   int
	handlers sync.WaitGroup
}

// hand gives nm to a worker, starting one unless an idle worker is left
// for it, within the bound. queue holds up to MaxConcurrent messages the
// workers have not taken yet, so a burst costs the callback no wait;
// beyond that it waits, and meanwhile the subscription's pending buffer
// holds what arrives. idle counts the workers that will take a queued
// message (a worker just started counts), queued the messages in queue:
// while idle > queued, a queued message has a worker coming for it.
func (s *subscription) hand(nm *natsgo.Msg, handle func(*natsgo.Msg)) {
	s.qmu.Lock()
	if s.stopped {
		s.qmu.Unlock()
		return
	}
	if s.idle <= s.queued && s.workers < s.opts.MaxConcurrent {
		s.workers++
		s.idle++
		s.handlers.Add(1)
		go s.work(handle)
	}
	s.queued++
	s.qmu.Unlock()
	select {
	case s.queue <- nm:
	case <-s.done: // the connection is closed: nothing is handled any more
	}
}

// work is one worker: it takes queued messages until stopWorkers, then
// handles what is left in the queue.
func (s *subscription) work(handle func(*natsgo.Msg)) {
	defer s.handlers.Done()
	take := func(nm *natsgo.Msg) {
		s.qmu.Lock()
		s.idle--
		s.queued--
		s.qmu.Unlock()
		handle(nm)
		s.qmu.Lock()
		s.idle++
		s.qmu.Unlock()
	}
	for {
		select {
		case nm := <-s.queue:
			take(nm)
		case <-s.done:
			for {
				select {
				case nm := <-s.queue:
					take(nm)
				default:
					return
				}
			}
		}
	}
}

// stopWorkers ends the workers once they finished what they were given.
// It never waits: a callback still handing over gives up.
func (s *subscription) stopWorkers() {
	s.qmu.Lock()
	defer s.qmu.Unlock()
	if !s.stopped && s.done != nil {
		close(s.done)
	}
	s.stopped = true
}

func (s *subscription) Topic() string { return s.topic }
func (s *subscription) Queue() string { return s.opts.Queue }

// Unsubscribe drains the subscription: it stops taking messages and
// finishes those it holds, within ctx.
func (s *subscription) Unsubscribe(ctx context.Context) error {
	if err := s.sub.Drain(); err != nil && !errors.Is(err, natsgo.ErrConnectionClosed) && !errors.Is(err, natsgo.ErrBadSubscription) {
		return err
	}
	for s.sub.IsValid() {
		t := time.NewTimer(10 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("nats broker: unsubscribe %q: %w", s.topic, ctx.Err())
		case <-t.C:
		}
	}
	s.stopWorkers()
	s.b.mu.Lock()
	delete(s.b.subs, s)
	s.b.mu.Unlock()
	done := make(chan struct{})
	go func() { s.handlers.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("nats broker: unsubscribe %q: handlers still running: %w", s.topic, ctx.Err())
	}
}

func (b *natsBroker) Subscribe(topic string, h broker.Handler, opts ...broker.SubscribeOption) (broker.Subscriber, error) {
	if err := broker.ValidateTopic(topic); err != nil {
		return nil, err
	}
	nc, err := b.conn()
	if err != nil {
		return nil, err
	}
	o := broker.NewSubscribeOptions(opts...)
	if len(o.AllowPublishers) > 0 {
		return nil, broker.ErrPublisherIdentity
	}
	s := &subscription{b: b, topic: topic, opts: o}
	handle := func(nm *natsgo.Msg) {
		m := &broker.Message{Header: make(map[string]string, len(nm.Header)), Body: nm.Data}
		for k, v := range nm.Header {
			if len(v) > 0 {
				m.Header[lowerKey(k)] = v[0]
			}
		}
		if err := broker.Invoke(context.Background(), h, topic, m, s.opts.AutoAck); err != nil {
			b.opts.conn.Logger.Warn("nats broker: handler refused a message", "topic", topic, "queue", s.opts.Queue,
				"content_type", m.Header["content-type"], "error", err)
		}
	}
	// nats.go calls cb on one goroutine per subscription, in order. With a
	// bound of 1 the handler runs right there (order kept); otherwise cb
	// hands each message to a worker, and while all are busy it waits, so
	// the subscription's pending buffer absorbs the rest.
	cb := handle
	if o.MaxConcurrent > 1 {
		s.queue, s.done = make(chan *natsgo.Msg, o.MaxConcurrent), make(chan struct{})
		cb = func(nm *natsgo.Msg) { s.hand(nm, handle) }
	}
	if s.opts.Queue != "" {
		s.sub, err = nc.QueueSubscribe(topic, s.opts.Queue, cb)
	} else {
		s.sub, err = nc.Subscribe(topic, cb)
	}
	if err != nil {
		return nil, fmt.Errorf("nats broker: subscribe to %q: %w", topic, err)
	}
	// Make sure the server knows the subscription before Subscribe returns,
	// so that a publish right after it is not missed.
	if err := nc.Flush(); err != nil {
		s.sub.Unsubscribe()
		return nil, fmt.Errorf("nats broker: subscribe to %q: %w", topic, err)
	}
	b.mu.Lock()
	if b.subs != nil {
		b.subs[s] = struct{}{}
	}
	b.mu.Unlock()
	return s, nil
}
