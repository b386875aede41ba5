package direct

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/microgrpc/microgrpc/broker"
	"github.com/microgrpc/microgrpc/proto/delivery"
	"github.com/microgrpc/microgrpc/resolver"
)

// Publish delivers m to every subscriber of topic and to one member of
// every queue group, all at once, and waits for every result.
func (b *directBroker) Publish(ctx context.Context, topic string, m *broker.Message, opts ...broker.PublishOption) error {
	if err := broker.ValidateTopic(topic); err != nil {
		return err
	}
	msg := broker.NewPublishOptions(opts...).Prepare(m)
	if err := broker.CheckSize(topic, msg, b.opts.maxSize); err != nil {
		return err
	}
	b.mu.Lock()
	switch {
	case b.closed:
		b.mu.Unlock()
		return broker.ErrClosed
	case !b.connected:
		b.mu.Unlock()
		return broker.ErrNotConnected
	}
	b.mu.Unlock()
	tc, err := b.topic(ctx, topic)
	if err != nil {
		if errors.Is(err, errBrokerClosed) {
			return broker.ErrClosed
		}
		return err
	}
	var targets []*target
	var groups map[string]*target // made for the first queue group
	for _, n := range tc.snapshot() {
		q := n.Metadata["queue"]
		if q == "" {
			targets = append(targets, &target{members: []resolver.Node{n}})
			continue
		}
		t := groups[q]
		if t == nil {
			if groups == nil {
				groups = map[string]*target{}
			}
			t = &target{group: q}
			groups[q] = t
			targets = append(targets, t)
		}
		t.members = append(t.members, n)
	}
	d := outgoing{topic: topic, msg: msg}
	// Start every delivery, then collect: subscribers are reached in
	// parallel, and a group's next member is tried only when one fails.
	for _, t := range targets {
		if len(t.members) > 1 {
			t.order = rand.Perm(len(t.members))
		}
		b.try(ctx, t, &d)
	}
	var errs []error
	for _, t := range targets {
		for {
			err := t.result()
			if err == nil {
				break
			}
			if t.group == "" {
				n := t.members[0]
				errs = append(errs, fmt.Errorf("%w: topic %q, subscriber %s at %s: %v", broker.ErrNotDelivered, topic, n.ID, n.Address, err))
				break
			}
			t.tried = append(t.tried, fmt.Errorf("%s: %v", t.member().ID, err))
			t.next++
			if t.next == len(t.members) || ctx.Err() != nil {
				errs = append(errs, fmt.Errorf("%w: topic %q, queue group %q: no member took it (%v)", broker.ErrNotDelivered, topic, t.group, errors.Join(t.tried...)))
				break
			}
			b.try(ctx, t, &d)
		}
	}
	return errors.Join(errs...)
}

// target is a plain subscriber, or a queue group tried member by member.
type target struct {
	group   string
	members []resolver.Node
	order   []int // random order of members (groups)
	next    int   // index into order of the member being tried
	tried   []error

	p      *pending           // the delivery in progress
	cancel context.CancelFunc // ends a local delivery's timeout; nil otherwise
}

func (t *target) member() resolver.Node {
	if t.order == nil {
		return t.members[t.next]
	}
	return t.members[t.order[t.next]]
}

// result waits for the delivery in progress.
func (t *target) result() error {
	err := t.p.wait()
	if t.cancel != nil {
		t.cancel()
		t.cancel = nil
	}
	return err
}

// try starts the delivery to the target's current member: queued on the
// subscription itself when it is one of ours, sent to its process
// otherwise.
//
// Each attempt has its own timeout, so a member that does not answer
// (frozen, cut off) leaves time to try the next one.
func (b *directBroker) try(ctx context.Context, t *target, d *outgoing) {
	n := t.member()
	b.mu.Lock()
	local := b.subs[n.ID]
	b.mu.Unlock()
	if local == nil {
		timeout := b.opts.requestTimeout
		if dl, ok := ctx.Deadline(); ok {
			timeout = min(timeout, time.Until(dl))
		}
		if d.header == nil {
			d.header = headerPairs(d.msg.Header)
		}
		t.p = b.peer(n.Address).send(ctx, &delivery.Delivery{Subscription: n.ID, Topic: d.topic, Header: d.header,
			Body: d.msg.Body, TimeoutMs: uint32(max(timeout/time.Millisecond, 1))}, b.opts.requestTimeout)
		return
	}
	// The handler runs here and sees the attempt's deadline in its ctx.
	ctx, t.cancel = context.WithTimeout(ctx, b.opts.requestTimeout)
	pd := newPending(ctx)
	local.take(ctx, t.cancel, d.topic, d.msg.Clone(), func(r result) { pd.done <- r.error() })
	t.p = pd
}

// outgoing is what one Publish delivers.
type outgoing struct {
	topic  string
	msg    *broker.Message
	header []string // msg.Header as the wire has it, made once per Publish
}

// headerPairs is h as key, value, key, value, ...
func headerPairs(h map[string]string) []string {
	out := make([]string, 0, 2*len(h))
	for k, v := range h {
		out = append(out, k, v)
	}
	return out
}

// headerMap is the inverse of headerPairs; a lone last key gets "".
func headerMap(pairs []string) map[string]string {
	if len(pairs) == 0 {
		return nil
	}
	h := make(map[string]string, (len(pairs)+1)/2)
	for i := 0; i < len(pairs); i += 2 {
		v := ""
		if i+1 < len(pairs) {
			v = pairs[i+1]
		}
		h[pairs[i]] = v
	}
	return h
}
