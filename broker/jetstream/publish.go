package jetstream

import (
	"context"
	"errors"
	"fmt"
	"sync"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/microgrpc/microgrpc/broker"
)

var _ broker.AsyncPublisher = (*jsBroker)(nil)

// pubs are the publishes waiting for the server's acknowledgement, by
// the NATS message nats.go hands back to the broker's acknowledgement
// callbacks (ackHandler, errHandler): one map lookup per message, no
// goroutine and no future's channels. Disconnect ends those still waiting
// (close), which nats.go does not do when the connection closes.
type pubs struct {
	mu     sync.Mutex
	m      map[*natsgo.Msg]pub
	closed bool
}

type pub struct {
	topic string
	res   chan<- error // buffer 1
}

// add registers a publish about to be sent; false once closed.
func (p *pubs) add(nm *natsgo.Msg, topic string, res chan<- error) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.m[nm] = pub{topic: topic, res: res}
	return true
}

// take removes a publish, reporting whether it was still waiting.
func (p *pubs) take(nm *natsgo.Msg) (pub, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	w, ok := p.m[nm]
	if ok {
		delete(p.m, nm)
	}
	return w, ok
}

// close ends every publish still waiting with err.
func (p *pubs) close(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	for nm, w := range p.m {
		w.res <- fmt.Errorf("jetstream broker: publish to %q: no acknowledgement before Disconnect: %w", w.topic, err)
		delete(p.m, nm)
	}
}

// ackHandler is nats.go's callback for a stored message.
func (b *jsBroker) ackHandler(_ jetstream.JetStream, nm *natsgo.Msg, _ *jetstream.PubAck) {
	if w, ok := b.pubs.take(nm); ok {
		w.res <- nil
	}
}

// errHandler is nats.go's callback for a message the stream did not
// store (or whose acknowledgement the connection lost).
func (b *jsBroker) errHandler(js jetstream.JetStream, nm *natsgo.Msg, err error) {
	w, ok := b.pubs.take(nm)
	if !ok {
		return
	}
	if errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, jetstream.ErrStreamNotFound) {
		b.streamLost(js, w.topic)
	}
	w.res <- fmt.Errorf("jetstream broker: publish to %q not stored: %w", w.topic, err)
}

// Publish stores m in the topic's stream and returns once the server
// acknowledged it.
func (b *jsBroker) Publish(ctx context.Context, topic string, m *broker.Message, opts ...broker.PublishOption) error {
	res := b.PublishAsync(ctx, topic, m, opts...)
	select {
	case err := <-res:
		return err
	case <-ctx.Done():
		return fmt.Errorf("jetstream broker: publish to %q: no acknowledgement: %w", topic, ctx.Err())
	}
}

// PublishAsync is Publish without the wait (broker.AsyncPublisher): m is
// written at once, and the channel receives what Publish would have
// returned once the server answers, nil when the stream stored m. Many in
// flight share the connection's writes and the server's answers; up to
// WithMaxPending wait at once. ctx bounds what happens now (the stream's
// creation on a topic's first use); the result comes with the server's
// answer, with a lost connection, or with Disconnect, whatever ctx does
// later.
func (b *jsBroker) PublishAsync(ctx context.Context, topic string, m *broker.Message, opts ...broker.PublishOption) <-chan error {
	res := make(chan error, 1)
	if err := b.prepare(ctx, topic, m, opts, res); err != nil {
		res <- err
	}
	return res
}

// prepare checks a publish and sends it, or starts a goroutine that
// makes the topic's stream first; the result goes to res.
func (b *jsBroker) prepare(ctx context.Context, topic string, m *broker.Message, opts []broker.PublishOption, res chan<- error) error {
	if err := broker.ValidateTopic(topic); err != nil {
		return err
	}
	nc, js, err := b.conn()
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("jetstream broker: publish to %q: %w", topic, err)
	}
	msg := broker.NewPublishOptions(opts...).Prepare(m)
	if err := broker.CheckSize(topic, msg, int(nc.MaxPayload())); err != nil {
		return err
	}
	if b.streamReady(topic) {
		return b.send(js, topic, msg, res)
	}
	go func() {
		if _, err := b.ensureStream(ctx, js, topic); err != nil {
			res <- err
			return
		}
		if err := b.send(js, topic, msg, res); err != nil {
			res <- err
		}
	}()
	return nil
}

// store makes sure of the topic's stream and publishes msg to it, waiting
// within ctx (dead letters).
func (b *jsBroker) store(ctx context.Context, js jetstream.JetStream, topic string, msg *broker.Message) error {
	if _, err := b.ensureStream(ctx, js, topic); err != nil {
		return err
	}
	res := make(chan error, 1)
	if err := b.send(js, topic, msg, res); err != nil {
		return err
	}
	select {
	case err := <-res:
		return err
	case <-ctx.Done():
		return fmt.Errorf("jetstream broker: publish to %q: no acknowledgement: %w", topic, ctx.Err())
	}
}

// send writes msg; the acknowledgement callbacks (or Disconnect) answer
// on res. An error is one of the send itself, and nothing goes to res.
func (b *jsBroker) send(js jetstream.JetStream, topic string, msg *broker.Message, res chan<- error) error {
	nm := &natsgo.Msg{Subject: topic, Data: msg.Body}
	if len(msg.Header) > 0 {
		// Keys as they are (lower case): the subscriber reads them so,
		// and canonicalizing them costs more than the rest of the header.
		nm.Header = make(natsgo.Header, len(msg.Header))
		for k, v := range msg.Header {
			nm.Header[k] = []string{v}
		}
	}
	if !b.pubs.add(nm, topic, res) {
		return fmt.Errorf("jetstream broker: publish to %q: %w", topic, broker.ErrClosed)
	}
	if _, err := js.PublishMsgAsync(nm); err != nil {
		b.pubs.take(nm)
		if errors.Is(err, natsgo.ErrMaxPayload) {
			return fmt.Errorf("%w: %v", broker.ErrMessageTooLarge, err)
		}
		return fmt.Errorf("jetstream broker: publish to %q: %w", topic, err)
	}
	return nil
}
