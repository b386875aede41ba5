// Package nats is the NATS broker: github.com/nats-io/nats.go v1.55.0 on
// NATS core. Queue groups are NATS queue subscriptions; headers
// (content-type, metadata) travel as NATS headers; reconnects are handled
// by nats.go and logged here; Disconnect drains (subscriptions finish the
// messages they have, publishes are flushed).
//
// NATS core is at-most-once: Publish returns once the server has the
// message, and a handler's error cannot reach the publisher; it is logged.
// Concurrent publishes share the round trip that proves it (group commit):
// one PING written after their messages, answered by one PONG, covers them
// all, so the promise costs one round trip per batch, not per message.
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
	"strings"
	"sync"
	"time"

	natsgo "github.com/nats-io/nats.go"

	"github.com/microgrpc/microgrpc/broker"
	"github.com/microgrpc/microgrpc/broker/internal/limit"
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
	subs := b.subs
	b.subs = nil
	b.mu.Unlock()
	done := make(chan struct{})
	go func() {
		for s := range subs {
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
	if err := broker.ValidateTopic(topic); err != nil {
		return err
	}
	nc, fl, err := b.connFlusher()
	if err != nil {
		return err
	}
	msg := broker.NewPublishOptions(opts...).Prepare(m)
	if err := broker.CheckSize(topic, msg, int(nc.MaxPayload())); err != nil {
		return err
	}
	nm := &natsgo.Msg{Subject: topic, Data: msg.Body, Header: natsgo.Header{}}
	for k, v := range msg.Header {
		nm.Header.Set(k, v)
	}
	if err := fl.publish(ctx, nm); err != nil {
		if errors.Is(err, natsgo.ErrMaxPayload) {
			return fmt.Errorf("%w: %v", broker.ErrMessageTooLarge, err)
		}
		return fmt.Errorf("nats broker: publish to %q: %w", topic, err)
	}
	return nil
}

type subscription struct {
	b     *natsBroker
	topic string
	opts  broker.SubscribeOptions
	sub   *natsgo.Subscription
	limit limit.Limiter
	// handlers counts the handler calls running on their own goroutines;
	// Unsubscribe waits for them after the drain (no call starts after it).
	handlers sync.WaitGroup
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
	s := &subscription{b: b, topic: topic, opts: o, limit: limit.New(o.MaxConcurrent)}
	handle := func(nm *natsgo.Msg) {
		m := &broker.Message{Header: make(map[string]string, len(nm.Header)), Body: nm.Data}
		for k := range nm.Header {
			m.Header[strings.ToLower(k)] = nm.Header.Get(k)
		}
		if err := broker.Invoke(context.Background(), h, topic, m, s.opts.AutoAck); err != nil {
			b.opts.conn.Logger.Warn("nats broker: handler refused a message", "topic", topic, "queue", s.opts.Queue,
				"content_type", m.Header["content-type"], "error", err)
		}
	}
	// nats.go calls cb on one goroutine per subscription, in order. With a
	// bound of 1 the handler runs right there (order kept); otherwise each
	// message gets its own goroutine once a slot is free, and while all are
	// busy cb waits, so the subscription's pending buffer absorbs the rest.
	cb := handle
	if o.MaxConcurrent > 1 {
		cb = func(nm *natsgo.Msg) {
			_ = s.limit.Acquire(context.Background())
			s.handlers.Add(1)
			go func() {
				defer s.handlers.Done()
				defer s.limit.Release()
				handle(nm)
			}()
		}
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
