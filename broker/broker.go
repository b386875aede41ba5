// Package broker is microgrpc's asynchronous messaging: the [Broker]
// interface that pub/sub plugins implement, and the byte-level [Message]
// they carry. Encoding (by content-type), typed handlers and metadata are
// the micro package's job (micro.NewPublisher, micro.RegisterSubscriber);
// a Broker only moves headers and bytes.
//
// Implementations: broker/http (the default: point-to-point HTTP between
// the processes, subscribers found through the service registry, no extra
// server), broker/nats (NATS core), broker/jetstream (NATS JetStream:
// stored, at least once, survives subscribers and servers that restart),
// and broker/memory for tests and single-process programs.
//
// # Delivery
//
// Publish delivers a message to every subscriber of its topic, except that
// the subscribers sharing a queue group get one copy between them (a
// randomly chosen member; another one if it fails). Publishing to a topic
// nobody subscribes to is not an error. Where the transport can tell
// (http, memory), Publish returns nil only once every subscriber (and one
// member of every queue group) handled the message, that is, its handler
// returned nil (and, with DisableAutoAck, called Ack); otherwise it returns
// an error wrapping ErrNotDelivered that names the topic and the subscriber
// or group. NATS core cannot tell: there Publish returns once the NATS
// server has the message. JetStream returns once the stream stored it,
// and delivers it (again, until a handler takes it) to subscribers that
// run later.
//
// # Waiting, or not
//
// Publish waits for its promise. PublishAsync returns at once and delivers
// the same result on a channel, so a caller can keep many publishes in
// flight: brokers let publishes that overlap share their round trips
// (NATS one flush, http one request per subscriber), which a caller that
// waits for each in turn cannot give them.
//
// # Concurrency and order
//
// Deliveries to one subscription run concurrently, up to MaxConcurrent at
// once (default DefaultMaxConcurrent); a slow handler holds up only its own
// subscription. No order is promised between messages handled concurrently.
// With MaxConcurrent(1) a subscription handles one message at a time, in the
// order it receives them: messages that one publisher published one after
// another (each Publish returned before the next began) are handled in that
// order by every broker here (jetstream: until a message is redelivered).
//
// # Errors
//
// Callers match errors with errors.Is: ErrNotConnected, ErrClosed,
// ErrMessageTooLarge, ErrInvalidTopic, ErrNotDelivered. A handler returns an
// error wrapping ErrRejected for a message that can never be handled.
package broker

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"unicode"
)

// Errors every Broker reports the same way.
var (
	ErrNotConnected    = errors.New("broker: not connected")
	ErrClosed          = errors.New("broker: closed")
	ErrMessageTooLarge = errors.New("broker: message too large")
	ErrInvalidTopic    = errors.New("broker: invalid topic")
	// ErrNotDelivered wraps a delivery that no subscriber (or no member of
	// a queue group) accepted, including handler errors.
	ErrNotDelivered = errors.New("broker: message not delivered")
	// ErrRejected is wrapped by a handler error that means the message can
	// never be handled (it does not decode, say). Brokers that redeliver
	// refused messages (jetstream) do not redeliver it: they terminate it
	// at once (and dead-letter it when configured).
	ErrRejected = errors.New("broker: message rejected")
)

// DefaultMaxMessageSize is the largest body a broker accepts unless told
// otherwise; it is NATS's default max_payload.
const DefaultMaxMessageSize = 1 << 20

// Message is what a broker carries: headers (keys lower case, like gRPC
// metadata) and an opaque body.
type Message struct {
	Header map[string]string
	Body   []byte
}

// Clone returns a copy of m that shares nothing with it.
func (m *Message) Clone() *Message {
	return &Message{Header: maps.Clone(m.Header), Body: append([]byte(nil), m.Body...)}
}

// Size is the message's size as limits count it: body plus headers.
func (m *Message) Size() int {
	n := len(m.Body)
	for k, v := range m.Header {
		n += len(k) + len(v)
	}
	return n
}

// Event is one delivery of a message to a subscriber.
type Event interface {
	Topic() string
	Message() *Message
	// Ack acknowledges the delivery. With auto-ack (the default) returning
	// nil from the handler acknowledges it; with DisableAutoAck the handler
	// must call Ack as well.
	Ack() error
}

// Handler handles one event. It may be called concurrently. Returning an
// error refuses the delivery (the http and memory brokers then report it to
// the publisher or try another queue member).
type Handler func(ctx context.Context, e Event) error

// Subscriber is a live subscription.
type Subscriber interface {
	Topic() string
	Queue() string
	// Unsubscribe stops deliveries and waits, within ctx, for the handler
	// calls in progress.
	Unsubscribe(ctx context.Context) error
}

// Broker moves messages between publishers and subscribers. It is safe for
// concurrent use.
type Broker interface {
	// Connect makes the broker ready (listens, dials). It is idempotent.
	Connect(ctx context.Context) error
	// Disconnect unsubscribes everything, waits within ctx for handlers in
	// progress (draining), and releases the broker's resources. A
	// disconnected broker cannot be connected again.
	Disconnect(ctx context.Context) error
	// Publish sends m to the subscribers of topic (see the package doc for
	// what a nil error promises).
	Publish(ctx context.Context, topic string, m *Message, opts ...PublishOption) error
	// Subscribe calls h for each message published to topic.
	Subscribe(topic string, h Handler, opts ...SubscribeOption) (Subscriber, error)
	// String names the implementation ("http", "nats", "jetstream", "memory").
	String() string
}

// AsyncPublisher is a Broker that can start a publish without waiting for
// its promise (broker/nats).
type AsyncPublisher interface {
	Broker
	// PublishAsync starts publishing m to topic and returns at once. The
	// channel receives one value: what Publish would have returned, so nil
	// means the same as a nil Publish.
	PublishAsync(ctx context.Context, topic string, m *Message, opts ...PublishOption) <-chan error
}

// PublishAsync starts publishing m through b and returns at once; the
// channel receives one value, what b.Publish would have returned. A
// caller that keeps several publishes in flight and then reads their
// results gets throughput that waiting on each in turn cannot: the
// brokers here let publishes that overlap share one round trip. It uses
// b's own PublishAsync when b is an AsyncPublisher, and otherwise runs
// b.Publish on a goroutine of its own (bounded by ctx, like Publish).
func PublishAsync(ctx context.Context, b Broker, topic string, m *Message, opts ...PublishOption) <-chan error {
	if ab, ok := b.(AsyncPublisher); ok {
		return ab.PublishAsync(ctx, topic, m, opts...)
	}
	ack := make(chan error, 1)
	go func() { ack <- b.Publish(ctx, topic, m, opts...) }()
	return ack
}

// PublishOptions are the settings of one Publish.
type PublishOptions struct {
	// Header is merged over the message's own headers.
	Header map[string]string
}

// PublishOption sets a PublishOptions field.
type PublishOption func(*PublishOptions)

// WithHeader adds a header to the published message.
func WithHeader(key, value string) PublishOption {
	return func(o *PublishOptions) {
		if o.Header == nil {
			o.Header = map[string]string{}
		}
		o.Header[strings.ToLower(key)] = value
	}
}

// NewPublishOptions applies opts.
func NewPublishOptions(opts ...PublishOption) PublishOptions {
	if len(opts) == 0 {
		return PublishOptions{}
	}
	return newPublishOptions(opts)
}

func newPublishOptions(opts []PublishOption) PublishOptions {
	var o PublishOptions
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

// Prepare returns the message to send: m with the options' headers merged
// in and header keys lower-cased. It returns m itself when there is
// nothing to change; brokers only read the result.
func (o PublishOptions) Prepare(m *Message) *Message {
	if len(o.Header) == 0 && lowerKeys(m.Header) {
		return m
	}
	out := &Message{Header: make(map[string]string, len(m.Header)+len(o.Header)), Body: m.Body}
	for k, v := range m.Header {
		out.Header[strings.ToLower(k)] = v
	}
	for k, v := range o.Header {
		out.Header[strings.ToLower(k)] = v
	}
	return out
}

func lowerKeys(h map[string]string) bool {
	for k := range h {
		for i := 0; i < len(k); i++ {
			if c := k[i]; c >= 'A' && c <= 'Z' || c >= 0x80 {
				return false
			}
		}
	}
	return true
}

// DefaultMaxConcurrent is how many deliveries to one subscription run at
// once unless MaxConcurrent says otherwise.
const DefaultMaxConcurrent = 32

// SubscribeOptions are the settings of one Subscribe.
type SubscribeOptions struct {
	// Queue, when set, makes the subscriber a member of a queue group:
	// each message goes to one member of the group.
	Queue string
	// AutoAck is true unless DisableAutoAck was given.
	AutoAck bool
	// MaxConcurrent bounds the handler calls of this subscription that run
	// at once (default DefaultMaxConcurrent). A slow handler slows only its
	// own subscription. With 1, messages are handled one at a time in the
	// order they arrive; see the package doc for what that order is.
	MaxConcurrent int
	// Name names the subscriber (micro sets the service's name). Durable
	// brokers (jetstream) keep a plain subscription's place under it, so a
	// restarted subscriber resumes where it stopped.
	Name string
	// Ephemeral asks durable brokers not to keep the subscription's place
	// once it ends: it gets only what is published while it runs.
	Ephemeral bool
}

// SubscribeOption sets a SubscribeOptions field.
type SubscribeOption func(*SubscribeOptions)

// Queue puts the subscriber in a queue group.
func Queue(name string) SubscribeOption { return func(o *SubscribeOptions) { o.Queue = name } }

// DisableAutoAck requires handlers to call Event.Ack.
func DisableAutoAck() SubscribeOption { return func(o *SubscribeOptions) { o.AutoAck = false } }

// MaxConcurrent bounds the handler calls of the subscription that run at
// once; n < 1 means DefaultMaxConcurrent.
func MaxConcurrent(n int) SubscribeOption { return func(o *SubscribeOptions) { o.MaxConcurrent = n } }

// SubscriberName names the subscriber (see SubscribeOptions.Name).
func SubscriberName(name string) SubscribeOption { return func(o *SubscribeOptions) { o.Name = name } }

// Ephemeral makes the subscription forget its place when it ends (see
// SubscribeOptions.Ephemeral).
func Ephemeral() SubscribeOption { return func(o *SubscribeOptions) { o.Ephemeral = true } }

// NewSubscribeOptions applies opts to the defaults.
func NewSubscribeOptions(opts ...SubscribeOption) SubscribeOptions {
	o := SubscribeOptions{AutoAck: true}
	for _, opt := range opts {
		opt(&o)
	}
	if o.MaxConcurrent < 1 {
		o.MaxConcurrent = DefaultMaxConcurrent
	}
	return o
}

// ValidateTopic checks a topic: not empty, no spaces, no '/' (topics are
// also registry names), no NATS wildcards, and no empty token between
// dots ("a..b", ".a", "a."), which NATS refuses: every broker refuses the
// same topics, so a program that works on one works on the others.
func ValidateTopic(topic string) error {
	if topic == "" {
		return fmt.Errorf("%w: empty", ErrInvalidTopic)
	}
	// One pass over the bytes for the usual ASCII topic; the rest goes
	// through the full checks.
	plain := true
	for i := 0; i < len(topic); i++ {
		switch c := topic[i]; {
		case c == '/' || c == '*' || c == '>':
			return fmt.Errorf("%w: %q contains '/', '*' or '>'", ErrInvalidTopic, topic)
		case c == '.' && (i == 0 || i == len(topic)-1 || topic[i+1] == '.'):
			return fmt.Errorf("%w: %q has an empty token (a leading, trailing or doubled '.')", ErrInvalidTopic, topic)
		case c <= ' ' || c >= 0x7f:
			plain = false
		}
	}
	if !plain && strings.IndexFunc(topic, unicode.IsSpace) >= 0 {
		return fmt.Errorf("%w: %q contains white space", ErrInvalidTopic, topic)
	}
	return nil
}

// CheckSize returns an ErrMessageTooLarge error when m exceeds limit.
func CheckSize(topic string, m *Message, limit int) error {
	if limit > 0 && m.Size() > limit {
		return fmt.Errorf("%w: %d bytes to %q, limit %d", ErrMessageTooLarge, m.Size(), topic, limit)
	}
	return nil
}

// NewEvent returns an Event for a delivery; ack is called by Ack (nil:
// Ack does nothing). Brokers use it.
func NewEvent(topic string, m *Message, ack func() error) Event {
	return &event{topic: topic, m: m, ack: ack}
}

type event struct {
	topic string
	m     *Message
	ack   func() error
}

func (e *event) Topic() string     { return e.topic }
func (e *event) Message() *Message { return e.m }
func (e *event) Ack() error {
	if e.ack == nil {
		return nil
	}
	return e.ack()
}

// invokeEvent is Invoke's Event: Ack only records that it was called.
type invokeEvent struct {
	topic string
	m     *Message
	acked bool
}

func (e *invokeEvent) Topic() string     { return e.topic }
func (e *invokeEvent) Message() *Message { return e.m }
func (e *invokeEvent) Ack() error        { e.acked = true; return nil }

// Invoke runs h for one delivery and applies the ack rule: the delivery is
// acknowledged when h returns nil and, without auto-ack, called Ack.
func Invoke(ctx context.Context, h Handler, topic string, m *Message, autoAck bool) error {
	ev := &invokeEvent{topic: topic, m: m}
	if err := h(ctx, ev); err != nil {
		return err
	}
	if !autoAck && !ev.acked {
		return errors.New("handler returned without calling Ack")
	}
	return nil
}
