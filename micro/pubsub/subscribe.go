package pubsub

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"google.golang.org/grpc/metadata"

	"github.com/microgrpc/microgrpc/broker"
	_ "github.com/microgrpc/microgrpc/broker/direct" // the default broker, http
	"github.com/microgrpc/microgrpc/codec"
	"github.com/microgrpc/microgrpc/interceptors"
	"github.com/microgrpc/microgrpc/micro"
)

// SubscriberOption configures RegisterSubscriber.
type SubscriberOption func(*subscriberOptions)

type subscriberOptions struct {
	queue           string
	maxConcurrent   int
	ephemeral       bool
	allowPublishers []string
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

// WithAllowedPublishers admits only deliveries from publishers with these
// identities (auth.PeerIdentity of their client certificates: a URI SAN
// such as spiffe://example.org/billing, else a DNS SAN, else the CN).
// It needs the http broker with mutual TLS (--tls_ca_file), which knows
// who delivers; every other broker refuses the subscription when it
// starts (broker.ErrPublisherIdentity), so Run fails. A
// publisher not on the list gets PERMISSION_DENIED, and its Publish fails.
func WithAllowedPublishers(ids ...string) SubscriberOption {
	return func(o *subscriberOptions) { o.allowPublishers = append(o.allowPublishers, ids...) }
}

// ErrUndecodable is wrapped by the error a subscriber returns for a message
// that does not decode into the handler's type. It wraps
// broker.ErrRejected: brokers that redeliver do not redeliver such a
// message.
var ErrUndecodable = fmt.Errorf("pubsub: message does not decode into the handler's type (%w)", broker.ErrRejected)

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
// It makes the service's broker (an error making it is returned here), so
// call it after Init. Subscriptions start when the service runs (at once if
// it already does) and are drained before it exits.
func RegisterSubscriber(topic string, svc *micro.Service, handler any, opts ...SubscriberOption) error {
	fn, err := newSubscriberFunc(handler)
	if err != nil {
		return err
	}
	if err := broker.ValidateTopic(topic); err != nil {
		return fmt.Errorf("pubsub: %w", err)
	}
	sub := &subscription{topic: topic, fn: fn}
	for _, opt := range opts {
		opt(&sub.opts)
	}
	if _, err := svc.Broker(); err != nil {
		return err
	}
	ctx := context.Background()
	p, err := svc.AddPart(ctx, partKey{}, func() (micro.Part, error) { return &part{svc: svc}, nil })
	if err != nil {
		return fmt.Errorf("pubsub: subscribe to %q: %w", topic, err)
	}
	return p.(*part).add(ctx, sub)
}

// partKey is the key of a service's pub/sub part.
type partKey struct{}

// part is a service's subscriptions, started and drained by its Run.
type part struct {
	svc *micro.Service

	mu      sync.Mutex
	subs    []*subscription
	started bool
	stopped bool
}

var _ micro.Part = (*part)(nil)

// add records sub and, once the part started, subscribes it.
func (p *part) add(ctx context.Context, sub *subscription) error {
	p.mu.Lock()
	switch {
	case p.stopped:
		p.mu.Unlock()
		return fmt.Errorf("pubsub: subscribe to %q: %w", sub.topic, micro.ErrStopped)
	case !p.started:
		p.subs = append(p.subs, sub)
		p.mu.Unlock()
		return nil
	}
	p.subs = append(p.subs, sub)
	p.mu.Unlock()
	return p.subscribe(ctx, sub)
}

// Start subscribes everything registered so far.
func (p *part) Start(ctx context.Context) error {
	p.mu.Lock()
	p.started = true
	subs := append([]*subscription(nil), p.subs...)
	p.mu.Unlock()
	for _, sub := range subs {
		if err := p.subscribe(ctx, sub); err != nil {
			return err
		}
	}
	return nil
}

// Stop drains every subscription within ctx.
func (p *part) Stop(ctx context.Context) error {
	p.mu.Lock()
	p.stopped = true
	subs := append([]*subscription(nil), p.subs...)
	p.mu.Unlock()
	var errs []error
	for _, sub := range subs {
		p.mu.Lock()
		bs := sub.sub
		sub.sub = nil
		p.mu.Unlock()
		if bs == nil {
			continue
		}
		if err := bs.Unsubscribe(ctx); err != nil {
			errs = append(errs, fmt.Errorf("unsubscribe from %q: %w", sub.topic, err))
		}
	}
	return errors.Join(errs...)
}

// subscribe starts one subscription on the broker.
func (p *part) subscribe(ctx context.Context, sub *subscription) error {
	b, err := connected(ctx, p.svc)
	if err != nil {
		return err
	}
	// Named after the service: durable brokers keep its place under it.
	bopts := []broker.SubscribeOption{broker.SubscriberName(p.svc.Name()), broker.MaxConcurrent(sub.opts.maxConcurrent)}
	if sub.opts.queue != "" {
		bopts = append(bopts, broker.Queue(sub.opts.queue))
	}
	if sub.opts.ephemeral {
		bopts = append(bopts, broker.Ephemeral())
	}
	if len(sub.opts.allowPublishers) > 0 {
		bopts = append(bopts, broker.AllowPublishers(sub.opts.allowPublishers...))
	}
	chain := interceptors.ChainSubscriber(p.svc.SubscriberInterceptors()...)
	final := chain(func(ctx context.Context, _ string, msg any) error { return sub.fn.call(ctx, msg) })
	bs, err := b.Subscribe(sub.topic, p.decodingHandler(sub, final), bopts...)
	if err != nil {
		return fmt.Errorf("pubsub: subscribe to %q: %w", sub.topic, err)
	}
	p.mu.Lock()
	stopped := p.stopped
	if !stopped {
		sub.sub = bs
	}
	p.mu.Unlock()
	if stopped {
		// The service stopped its subscriptions while this one was being
		// made: it must not outlive them.
		return bs.Unsubscribe(ctx)
	}
	return nil
}

func (p *part) decodingHandler(sub *subscription, next interceptors.SubscriberHandler) broker.Handler {
	log := p.svc.Logger()
	return func(ctx context.Context, e broker.Event) error {
		m := e.Message()
		ct := m.Header["content-type"]
		v := sub.fn.newMsg()
		if err := codec.Unmarshal(ct, m.Body, v); err != nil {
			log.Warn("pubsub: subscriber refused a message that does not decode",
				"topic", e.Topic(), "content_type", ct, "want", fmt.Sprintf("%T", v), "error", err)
			// The publisher sees this: no Go type names in it (they are
			// in the log line above).
			return fmt.Errorf("%w: topic %q, content-type %q", ErrUndecodable, e.Topic(), ct)
		}
		if len(m.Header) > 1 {
			md := make(metadata.MD, len(m.Header)-1)
			for k, val := range m.Header {
				if k != "content-type" {
					md.Set(k, val)
				}
			}
			ctx = metadata.NewIncomingContext(ctx, md)
		} else {
			ctx = metadata.NewIncomingContext(ctx, metadata.MD{})
		}
		return next(ctx, e.Topic(), v)
	}
}
