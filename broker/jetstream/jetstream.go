// Package jetstream is the durable broker: NATS JetStream through
// nats.go's jetstream package. Messages are stored in a stream before
// Publish returns, and wait there for subscribers that are not running
// yet; a handler's refusal, or a subscriber that dies mid-message, makes
// the message come again.
//
// Select it with --broker=jetstream (MICRO_BROKER=jetstream) and
// --broker_address=nats://host:4222, or NewBroker in code. The NATS
// server must run with JetStream on.
//
// # What it promises
//
//   - Publish returns nil only once the stream stored the message (the
//     server's PubAck). Concurrent publishes are pipelined: each waits for
//     its own acknowledgement, none waits for another's.
//
//   - Streams are created, or updated, on a topic's first use: one per
//     topic named after WithStreamPrefix and the topic, with the limits of
//     WithStreamDefaults (retention, max age, replicas...), unless a
//     stream declared WithStream covers the topic.
//
//   - A queue group is a durable consumer named after the group: its
//     members share it, and each message goes to one of them. A plain
//     subscription is a durable consumer named after the subscriber
//     (micro passes the service's name): a restarted service resumes where
//     it stopped, and the instances of one service share it, so each
//     message is handled once per subscribing service. With
//     broker.Ephemeral, or without a name, it is ephemeral: only what is
//     published while it runs. See Consumer names below.
//
//   - A stream or consumer that disappears (memory storage and a server
//     restart, an operator, a cluster losing it) is made again by the next
//     publish or by the subscription, at most once per second.
//
//   - A handler returning nil acknowledges the message. An error makes it
//     come again after a backoff (WithBackoff), up to WithMaxDeliver
//     deliveries; then, or at once for an error wrapping
//     broker.ErrRejected, it is terminated, logged, and published to the
//     dead-letter subject when WithDeadLetter set one.
//
//   - A message whose subscriber dies while handling it is delivered again,
//     to another member if there is one, after WithAckWait (a few seconds
//     by default). A handler that runs longer is not cut short, nor is its
//     message delivered again meanwhile: the broker tells the server every
//     third of the ack wait that the message is in progress.
//
// Delivery is thus at least once: a handler may see a message again (after
// a crash between handling and acknowledging), so handlers should be
// idempotent.
//
// # Consumer names
//
// Operators see the consumers in nats stream and consumer listings; they
// are named so that no two subscriptions meet by accident:
//
//	queue_<group>       a queue group's members, whatever their service
//	sub_<name>          a subscriber's (a service's) first subscription of a topic
//	sub2_<name>, sub3_  its second, third... subscription of the same topic
//	eph_<random>        an ephemeral subscription
//
// so a queue group named like a service never shares that service's
// consumer, and two handlers one service subscribes to one topic each get
// every message. A subscription takes the lowest number its broker does
// not hold for that name and topic, so the instances of a service that
// subscribe in the same order share their consumers one for one, and a
// restarted instance takes its old places again. In a stream that holds
// several topics (WithStream) the name ends with the topic and a hash of
// it. Names are the given ones where they are plain (letters, digits, '-'
// and '_'); other characters become '_', followed by a hash of the
// original.
//
// # A NATS cluster
//
// Give the broker the URLs of several servers of one cluster (WithURLs,
// or --broker_address=nats://a:4222,nats://b:4222,nats://c:4222): it
// connects to any of them, and when that server goes it moves to another
// by itself; its publishes in flight then fail (they may still have been
// stored), and its subscriptions resume through the new server. Keep the
// streams on several servers with WithReplicas(3) (--broker_replicas=3):
// a stream of 3 replicas keeps storing, and delivering, with one of its
// servers down. While the cluster elects a new leader for a stream whose
// leader died (a few seconds), publishes to it fail fast.
package jetstream

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"strings"
	"sync"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/microgrpc/microgrpc/broker"
	"github.com/microgrpc/microgrpc/broker/internal/natsconn"
)

// Name is the broker's name.
const Name = "jetstream"

// ErrInvalidOption is wrapped by Connect's error for options that cannot
// work.
var ErrInvalidOption = errors.New("jetstream broker: invalid option")

// Headers set on a dead-lettered message, besides its own.
const (
	HeaderDeadLetterTopic = "micro-dead-letter-topic"
	HeaderDeadLetterError = "micro-dead-letter-error"
	HeaderDeliveries      = "micro-deliveries"
)

// NewBroker returns a JetStream broker; Connect dials.
func NewBroker(opts ...Option) broker.Broker {
	o := defaultOptions()
	for _, opt := range opts {
		opt(&o)
	}
	return &jsBroker{opts: o, streams: map[string]*streamState{}, topicStreams: map[string]string{},
		subs: map[*subscription]struct{}{}, ordinals: map[string]map[int]bool{}, pubs: pubs{m: map[*natsgo.Msg]pub{}}}
}

type jsBroker struct {
	opts options

	mu      sync.Mutex
	nc      *natsgo.Conn
	js      jetstream.JetStream
	closed  bool
	streams map[string]*streamState // by stream name
	// topicStreams caches streamFor's names, for the publish path.
	topicStreams map[string]string
	subs         map[*subscription]struct{}
	ordinals     map[string]map[int]bool // taken, by subscriber and topic: see durable
	ctx          context.Context         // ends with Disconnect
	cancel       context.CancelFunc
	wg           sync.WaitGroup // the subscriptions' goroutines
	pubs         pubs
}

// streamState is a stream's creation (or update), shared by the publishes
// and subscriptions that wait for it.
type streamState struct {
	ready chan struct{}
	err   error // set before ready is closed
	// Under jsBroker.mu once ready is closed: when it was last made, and
	// whether it is being made again (streamLost).
	at       time.Time
	remaking bool
}

func (b *jsBroker) String() string { return Name }

func (o *options) validate() error {
	switch {
	case o.ackWait <= 0:
		return fmt.Errorf("%w: ack wait %v", ErrInvalidOption, o.ackWait)
	case o.maxDeliver < 1:
		return fmt.Errorf("%w: max deliver %d", ErrInvalidOption, o.maxDeliver)
	case o.backoffMin <= 0 || o.backoffMax < o.backoffMin:
		return fmt.Errorf("%w: backoff %v..%v", ErrInvalidOption, o.backoffMin, o.backoffMax)
	case o.maxPending < 1:
		return fmt.Errorf("%w: max pending %d", ErrInvalidOption, o.maxPending)
	case o.replicas < 0 || o.replicas > 5:
		return fmt.Errorf("%w: replicas %d: want 1 to 5", ErrInvalidOption, o.replicas)
	case o.streamPrefix == "" || strings.ContainsAny(o.streamPrefix, ".*> \t/\\"):
		return fmt.Errorf("%w: stream prefix %q", ErrInvalidOption, o.streamPrefix)
	}
	if o.deadLetter != "" {
		if err := broker.ValidateTopic(o.deadLetter); err != nil {
			return fmt.Errorf("%w: dead-letter subject: %v", ErrInvalidOption, err)
		}
	}
	for _, s := range o.streams {
		if s.Name == "" || len(s.Subjects) == 0 {
			return fmt.Errorf("%w: a declared stream needs a name and subjects", ErrInvalidOption)
		}
	}
	return nil
}

func (b *jsBroker) Connect(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case b.closed:
		return broker.ErrClosed
	case b.nc != nil:
		return nil
	}
	if err := b.opts.validate(); err != nil {
		return err
	}
	nc, err := natsconn.Connect(Name, b.opts.conn)
	if err != nil {
		return err
	}
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(b.opts.maxPending),
		jetstream.WithPublishAsyncAckHandler(b.ackHandler), jetstream.WithPublishAsyncErrHandler(b.errHandler))
	if err != nil {
		nc.Close()
		return fmt.Errorf("jetstream broker: %w", err)
	}
	// Fail early and clearly when the server has no JetStream.
	if _, err := js.AccountInfo(ctx); err != nil {
		nc.Close()
		return fmt.Errorf("jetstream broker: JetStream at %v: %w", b.opts.conn.URLs, err)
	}
	b.nc, b.js = nc, js
	b.ctx, b.cancel = context.WithCancel(context.Background())
	return nil
}

// conn returns the connection, or why there is none.
func (b *jsBroker) conn() (*natsgo.Conn, jetstream.JetStream, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case b.closed:
		return nil, nil, broker.ErrClosed
	case b.nc == nil:
		return nil, nil, broker.ErrNotConnected
	}
	return b.nc, b.js, nil
}

// streamFor returns the stream config a topic is stored in.
func (b *jsBroker) streamFor(topic string) jetstream.StreamConfig {
	for _, s := range b.opts.streams {
		for _, subj := range s.Subjects {
			if subjectMatches(subj, topic) {
				if s.Replicas == 0 && b.opts.replicas > 0 {
					s.Replicas = b.opts.replicas
				}
				return s
			}
		}
	}
	cfg := b.opts.stream
	cfg.Name = b.opts.streamPrefix + "_" + sanitize(topic)
	cfg.Subjects = []string{topic}
	if b.opts.replicas > 0 {
		cfg.Replicas = b.opts.replicas
	}
	return cfg
}

// ensureStream creates or updates a topic's stream once per broker, and
// returns its config.
func (b *jsBroker) ensureStream(ctx context.Context, js jetstream.JetStream, topic string) (jetstream.StreamConfig, error) {
	cfg := b.streamFor(topic)
	b.mu.Lock()
	st := b.streams[cfg.Name]
	first := st == nil
	if first {
		st = &streamState{ready: make(chan struct{})}
		b.streams[cfg.Name] = st
	}
	b.mu.Unlock()
	if first {
		cctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
		_, err := js.CreateOrUpdateStream(cctx, cfg)
		cancel()
		b.mu.Lock()
		st.at = time.Now()
		b.mu.Unlock()
		if err != nil {
			st.err = fmt.Errorf("jetstream broker: create or update stream %s for %q: %w", cfg.Name, topic, err)
			b.mu.Lock()
			if b.streams[cfg.Name] == st {
				delete(b.streams, cfg.Name) // the next use tries again
			}
			b.mu.Unlock()
		}
		close(st.ready)
	}
	select {
	case <-st.ready:
		return cfg, st.err
	case <-ctx.Done():
		return cfg, ctx.Err()
	case <-b.ctx.Done():
		return cfg, fmt.Errorf("jetstream broker: stream %s: %w", cfg.Name, broker.ErrClosed)
	}
}

// streamReady reports whether the topic's stream was made and nothing
// needs to wait for it.
func (b *jsBroker) streamReady(topic string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	name, ok := b.topicStreams[topic]
	if !ok {
		name = b.streamFor(topic).Name
		b.topicStreams[topic] = name
	}
	st := b.streams[name]
	if st == nil {
		return false
	}
	select {
	case <-st.ready:
		return st.err == nil
	default:
		return false
	}
}

// streamLost says that a publish found no stream to answer it: gone (a
// server with memory storage restarted, an operator deleted it, a cluster
// lost it), or only leaderless for a moment (a cluster electing a new
// leader). It makes the stream again in the background, at most once per
// repairEvery; publishes do not wait for that, so while a cluster elects
// they fail fast rather than queue up behind a stream request that cannot
// be answered yet.
func (b *jsBroker) streamLost(js jetstream.JetStream, topic string) {
	cfg := b.streamFor(topic)
	b.mu.Lock()
	defer b.mu.Unlock()
	st := b.streams[cfg.Name]
	if b.closed || st == nil || st.remaking {
		return
	}
	select {
	case <-st.ready:
	default:
		return // being made right now
	}
	if time.Since(st.at) < repairEvery {
		return
	}
	st.remaking = true
	b.wg.Add(1) // under mu while open: Disconnect's Wait comes after
	go func() {
		defer b.wg.Done()
		ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
		defer cancel()
		if err := b.remakeStream(ctx, js, cfg); err != nil {
			b.opts.conn.Logger.Warn("jetstream broker: making a lost stream again", "topic", topic, "stream", cfg.Name, "error", err)
		}
	}()
}

// remakeStream creates or updates a stream that was made before, now.
func (b *jsBroker) remakeStream(ctx context.Context, js jetstream.JetStream, cfg jetstream.StreamConfig) error {
	_, err := js.CreateOrUpdateStream(ctx, cfg)
	b.mu.Lock()
	if st := b.streams[cfg.Name]; st != nil {
		st.at, st.remaking = time.Now(), false
	}
	b.mu.Unlock()
	return err
}

// takeOrdinal returns the lowest ordinal (from 1) of a subscriber's
// subscriptions to a topic that none of this broker's holds, and takes it.
func (b *jsBroker) takeOrdinal(key string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	taken := b.ordinals[key]
	if taken == nil {
		taken = map[int]bool{}
		b.ordinals[key] = taken
	}
	n := 1
	for taken[n] {
		n++
	}
	taken[n] = true
	return n
}

func (b *jsBroker) releaseOrdinal(key string, n int) {
	if key == "" {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.ordinals[key], n)
	if len(b.ordinals[key]) == 0 {
		delete(b.ordinals, key)
	}
}

// Disconnect stops every subscription (the messages being handled finish,
// within ctx; those not yet handled stay in the stream), waits for the
// publishes in flight, and closes the connection.
func (b *jsBroker) Disconnect(ctx context.Context) error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	nc, js := b.nc, b.js
	subs := b.subs
	b.subs = map[*subscription]struct{}{}
	b.mu.Unlock()
	if nc == nil {
		return nil
	}
	var errs []error
	for s := range subs {
		if err := s.Unsubscribe(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-ctx.Done():
		errs = append(errs, fmt.Errorf("jetstream broker: publishes still waiting for acknowledgements: %w", ctx.Err()))
	}
	b.pubs.close(broker.ErrClosed)
	b.cancel()
	b.wg.Wait()
	closed := make(chan struct{})
	nc.SetClosedHandler(func(*natsgo.Conn) { close(closed) })
	if err := nc.Drain(); err != nil {
		nc.Close()
	} else {
		select {
		case <-closed:
		case <-ctx.Done():
			nc.Close()
			errs = append(errs, fmt.Errorf("jetstream broker: drain: %w", ctx.Err()))
		}
	}
	return errors.Join(errs...)
}

// sanitize makes a topic usable in stream and consumer names (no '.', no
// wildcards, no white space or separators); when it had to change
// anything, a hash of the original keeps different topics apart.
func sanitize(s string) string {
	var sb strings.Builder
	changed := false
	for _, r := range s {
		if r == '_' || r == '-' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' {
			sb.WriteRune(r)
			continue
		}
		sb.WriteByte('_')
		changed = true
	}
	if changed {
		h := fnv.New32a()
		h.Write([]byte(s))
		fmt.Fprintf(&sb, "_%08x", h.Sum32())
	}
	return sb.String()
}

// sanitizeHashed is sanitize, always with the hash: for a name made of
// parts, so that where one part ends is never in doubt.
func sanitizeHashed(s string) string {
	out := sanitize(s)
	if out == s {
		h := fnv.New32a()
		h.Write([]byte(s))
		out = fmt.Sprintf("%s_%08x", out, h.Sum32())
	}
	return out
}

// subjectMatches reports whether a NATS subject pattern ('*' one token,
// '>' the rest) matches a subject.
func subjectMatches(pattern, subject string) bool {
	p, s := strings.Split(pattern, "."), strings.Split(subject, ".")
	for i, tok := range p {
		switch {
		case tok == ">":
			return len(s) > i
		case i >= len(s):
			return false
		case tok != "*" && tok != s[i]:
			return false
		}
	}
	return len(p) == len(s)
}
