package micro

import (
	"context"
	"fmt"
	"strings"

	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	"github.com/microgrpc/microgrpc/broker"
	"github.com/microgrpc/microgrpc/codec"
	"github.com/microgrpc/microgrpc/interceptors"
	"github.com/microgrpc/microgrpc/internal/httpplugin"
	"github.com/microgrpc/microgrpc/plugins"
)

// Broker returns the service's broker, making it from the broker plugin
// (default http, over the service's registry) on first use, or the error
// that making it gave; Publish and Run report the same error. A broker
// name nothing registered fails at Init already. A service that never
// calls Broker, Publish or RegisterSubscriber does not link the http
// broker's code (see plugins/builtin).
func (s *Service) Broker() (broker.Broker, error) {
	return s.broker()
}

func (s *Service) broker() (broker.Broker, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.brokerLocked()
}

// brokerLocked is broker. Caller must hold s.mu.
func (s *Service) brokerLocked() (broker.Broker, error) {
	if s.brk != nil || s.brkErr != nil {
		return s.brk, s.brkErr
	}
	reg, err := s.registryLocked()
	if err != nil {
		s.brkErr = err
		return nil, err
	}
	bo := plugins.BrokerOptions{Addrs: s.opts.brokerAddrs, Registry: reg, Token: s.opts.brokerToken,
		AckWait: s.opts.brokerAckWait, Replicas: s.opts.brokerReplicas}
	src, err := s.tlsSourceLocked()
	if err != nil {
		s.brkErr = err
		return nil, err
	}
	if src != nil {
		bo.ClientTLS = src.ClientConfig()
		if src.HasCert() {
			bo.ServerTLS = src.ServerConfig()
		}
	}
	// The default broker's code is linked only from here: see
	// plugins/builtin.
	httpplugin.Link()
	s.brk, s.brkErr = plugins.NewBroker(s.opts.brokerName, bo)
	if s.brkErr != nil {
		s.brkErr = fmt.Errorf("micro: %w", s.brkErr)
	}
	s.ownsBroker = s.brkErr == nil
	return s.brk, s.brkErr
}

// connectedBroker returns the broker, connected.
func (s *Service) connectedBroker(ctx context.Context) (broker.Broker, error) {
	b, err := s.broker()
	if err != nil {
		return nil, err
	}
	if err := b.Connect(ctx); err != nil {
		return nil, fmt.Errorf("micro: connect %s broker: %w", b, err)
	}
	return b, nil
}

// PublishOption configures Publish and NewPublisher.
type PublishOption func(*publishOptions)

type publishOptions struct {
	json   bool
	header map[string]string
}

// WithJSON publishes proto messages as JSON (application/json) instead of
// protobuf. Values that are not proto messages are always JSON.
func WithJSON() PublishOption { return func(o *publishOptions) { o.json = true } }

// WithPublishHeader adds a header to published messages.
func WithPublishHeader(key, value string) PublishOption {
	return func(o *publishOptions) {
		if o.header == nil {
			o.header = map[string]string{}
		}
		o.header[strings.ToLower(key)] = value
	}
}

// Publisher publishes messages to one topic (go-micro's NewPublisher).
type Publisher struct {
	topic string
	svc   *Service
	opts  []PublishOption
}

// NewPublisher returns a publisher of topic through svc's broker.
func NewPublisher(topic string, svc *Service, opts ...PublishOption) *Publisher {
	return &Publisher{topic: topic, svc: svc, opts: opts}
}

// Publish encodes msg and publishes it to the publisher's topic.
func (p *Publisher) Publish(ctx context.Context, msg any, opts ...PublishOption) error {
	return p.svc.Publish(ctx, p.topic, msg, p.with(opts)...)
}

// PublishAsync is Publish without waiting: see Service.PublishAsync.
func (p *Publisher) PublishAsync(ctx context.Context, msg any, opts ...PublishOption) <-chan error {
	return p.svc.PublishAsync(ctx, p.topic, msg, p.with(opts)...)
}

func (p *Publisher) with(opts []PublishOption) []PublishOption {
	if len(opts) == 0 {
		return p.opts
	}
	return append(append([]PublishOption(nil), p.opts...), opts...)
}

// Publish encodes msg by content-type (protobuf for proto messages unless
// WithJSON; JSON otherwise), copies the outgoing gRPC metadata of ctx into
// the message headers, and publishes it to topic. See package broker for
// what a nil error promises with each broker.
func (s *Service) Publish(ctx context.Context, topic string, msg any, opts ...PublishOption) error {
	b, m, err := s.encode(ctx, topic, msg, opts)
	if err != nil {
		return err
	}
	return b.Publish(ctx, topic, m)
}

// PublishAsync is Publish without waiting for the broker's promise: it
// returns at once, and the channel receives one value, what Publish would
// have returned. A caller that keeps several publishes in flight and then
// reads their results lets them share the broker's round trips (see
// broker.PublishAsync); with NATS, about twice the throughput of 16
// goroutines that each wait.
func (s *Service) PublishAsync(ctx context.Context, topic string, msg any, opts ...PublishOption) <-chan error {
	b, m, err := s.encode(ctx, topic, msg, opts)
	if err != nil {
		ack := make(chan error, 1)
		ack <- err
		return ack
	}
	return broker.PublishAsync(ctx, b, topic, m)
}

// encode builds the broker message of a publish and returns the connected
// broker to send it through.
func (s *Service) encode(ctx context.Context, topic string, msg any, opts []PublishOption) (broker.Broker, *broker.Message, error) {
	var o publishOptions
	for _, opt := range opts {
		opt(&o)
	}
	ct := codec.ContentTypeJSON
	if _, isProto := msg.(proto.Message); isProto && !o.json {
		ct = codec.ContentTypeProto
	}
	body, err := codec.Marshal(ct, msg)
	if err != nil {
		return nil, nil, fmt.Errorf("micro: publish to %q: %w", topic, err)
	}
	header := map[string]string{}
	if md, ok := metadata.FromOutgoingContext(ctx); ok {
		for k, v := range md {
			header[strings.ToLower(k)] = strings.Join(v, ",")
		}
	}
	for k, v := range o.header {
		header[k] = v
	}
	header["content-type"] = ct
	b, err := s.connectedBroker(ctx)
	if err != nil {
		return nil, nil, err
	}
	return b, &broker.Message{Header: header, Body: body}, nil
}

// SubscriberOption configures RegisterSubscriber.
type SubscriberOption func(*subscriberOptions)

type subscriberOptions struct {
	queue         string
	maxConcurrent int
	ephemeral     bool
}

// WithQueue makes the subscriber a member of a queue group: each message
// goes to one member of the group.
func WithQueue(name string) SubscriberOption { return func(o *subscriberOptions) { o.queue = name } }

// WithMaxConcurrent bounds the handler calls of the subscription that run
// at once (default broker.DefaultMaxConcurrent); with 1 the handler sees
// one message at a time, in the order they arrive.
func WithMaxConcurrent(n int) SubscriberOption {
	return func(o *subscriberOptions) { o.maxConcurrent = n }
}

// WithEphemeral asks a durable broker (jetstream) not to keep the
// subscription's place for the service while it is down: it gets only
// what is published while it runs.
func WithEphemeral() SubscriberOption { return func(o *subscriberOptions) { o.ephemeral = true } }

type subscription struct {
	topic string
	fn    *subscriberFunc
	opts  subscriberOptions
	sub   broker.Subscriber
}

// RegisterSubscriber subscribes handler to topic on svc. The handler is a
// func(context.Context, *T) error, T a message type such as pb.Event;
// anything else is an error wrapping ErrInvalidHandler. Each message is
// decoded by its content-type into a new *T, its headers become incoming
// gRPC metadata of ctx, and the service's subscriber interceptors run
// around the handler. A message that does not decode never reaches the
// handler: it is refused and logged with topic and content-type.
//
// Subscriptions start when the service runs (at once if it already does)
// and are drained before it exits.
func RegisterSubscriber(topic string, svc *Service, handler any, opts ...SubscriberOption) error {
	fn, err := newSubscriberFunc(handler)
	if err != nil {
		return err
	}
	if err := broker.ValidateTopic(topic); err != nil {
		return fmt.Errorf("micro: %w", err)
	}
	sub := &subscription{topic: topic, fn: fn}
	for _, opt := range opts {
		opt(&sub.opts)
	}
	svc.mu.Lock()
	svc.subs = append(svc.subs, sub)
	svc.subscribe = svc.subscribeOne
	// Before Run starts the subscriptions this one is among those it will
	// start; after they started nobody else will start it; after they
	// stopped it must not start.
	start := svc.subsState == subsStarted
	svc.mu.Unlock()
	if start {
		return svc.subscribeOne(context.Background(), sub)
	}
	return nil
}

// subsState is where a service's subscriptions are in its life.
type subsState int

const (
	subsPending subsState = iota // not started: Run will start them
	subsStarted                  // started: new ones start at once
	subsStopped                  // stopped: new ones never start
)

// subscribeOne starts one subscription on the broker.
func (s *Service) subscribeOne(ctx context.Context, sub *subscription) error {
	b, err := s.connectedBroker(ctx)
	if err != nil {
		return err
	}
	// Named after the service: durable brokers keep its place under it.
	bopts := []broker.SubscribeOption{broker.SubscriberName(s.opts.name), broker.MaxConcurrent(sub.opts.maxConcurrent)}
	if sub.opts.queue != "" {
		bopts = append(bopts, broker.Queue(sub.opts.queue))
	}
	if sub.opts.ephemeral {
		bopts = append(bopts, broker.Ephemeral())
	}
	chain := interceptors.ChainSubscriber(s.opts.subscriberInterceptors...)
	final := chain(func(ctx context.Context, _ string, msg any) error { return sub.fn.call(ctx, msg) })
	bs, err := b.Subscribe(sub.topic, s.decodingHandler(sub, final), bopts...)
	if err != nil {
		return fmt.Errorf("micro: subscribe to %q: %w", sub.topic, err)
	}
	s.mu.Lock()
	stopped := s.subsState == subsStopped
	if !stopped {
		sub.sub = bs
	}
	s.mu.Unlock()
	if stopped {
		// The service stopped its subscriptions while this one was being
		// made: it must not outlive them.
		return bs.Unsubscribe(ctx)
	}
	return nil
}

// ErrUndecodable is wrapped by the error a subscriber returns for a message
// that does not decode into the handler's type. It wraps
// broker.ErrRejected: brokers that redeliver do not redeliver such a
// message.
var ErrUndecodable = fmt.Errorf("micro: message does not decode into the handler's type (%w)", broker.ErrRejected)

func (s *Service) decodingHandler(sub *subscription, next interceptors.SubscriberHandler) broker.Handler {
	return func(ctx context.Context, e broker.Event) error {
		m := e.Message()
		ct := m.Header["content-type"]
		v := sub.fn.newMsg()
		if err := codec.Unmarshal(ct, m.Body, v); err != nil {
			s.opts.logger.Warn("micro: subscriber refused a message that does not decode",
				"topic", e.Topic(), "content_type", ct, "want", fmt.Sprintf("%T", v), "error", err)
			// The publisher sees this: no Go type names in it (they are
			// in the log line above).
			return fmt.Errorf("%w: topic %q, content-type %q", ErrUndecodable, e.Topic(), ct)
		}
		md := metadata.MD{}
		for k, val := range m.Header {
			if k != "content-type" {
				md.Set(k, val)
			}
		}
		return next(metadata.NewIncomingContext(ctx, md), e.Topic(), v)
	}
}

// startSubscriptions subscribes everything registered so far; from then
// on RegisterSubscriber subscribes by itself.
func (s *Service) startSubscriptions(ctx context.Context) error {
	s.mu.Lock()
	if s.subsState != subsPending {
		s.mu.Unlock()
		return nil
	}
	s.subsState = subsStarted
	subs := append([]*subscription(nil), s.subs...)
	subscribe := s.subscribe
	s.mu.Unlock()
	for _, sub := range subs {
		if err := subscribe(ctx, sub); err != nil {
			return err
		}
	}
	return nil
}

// stopSubscriptions drains every subscription within ctx.
func (s *Service) stopSubscriptions(ctx context.Context) {
	s.mu.Lock()
	s.subsState = subsStopped
	subs := append([]*subscription(nil), s.subs...)
	s.mu.Unlock()
	for _, sub := range subs {
		s.mu.Lock()
		bs := sub.sub
		sub.sub = nil
		s.mu.Unlock()
		if bs == nil {
			continue
		}
		if err := bs.Unsubscribe(ctx); err != nil {
			s.opts.logger.Warn("micro: unsubscribe", "topic", sub.topic, "error", err)
		}
	}
}
