package direct

import (
	"context"
	"crypto/subtle"
	"errors"
	"io"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	grpcpeer "google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/microgrpc/microgrpc/broker"
	"github.com/microgrpc/microgrpc/interceptors/auth"
	"github.com/microgrpc/microgrpc/proto/delivery"
)

// deliverer is the broker as the gRPC server of its deliveries.
type deliverer struct {
	delivery.UnimplementedDelivererServer
	b *directBroker
}

var _ delivery.DelivererServer = (*deliverer)(nil)

// inStream is one publisher's Deliver stream, seen from the subscriber
// node. Its reader goroutine hands deliveries to subscriptions; the
// handler's goroutine (Deliver) sends their results back, many per
// message when they come together, and decides when the stream ends.
type inStream struct {
	b        *directBroker
	stream   grpc.BidiStreamingServer[delivery.Deliveries, delivery.Results]
	ctx      context.Context // the stream's: handlers' contexts derive from it
	identity string          // the publisher's certificate identity, if verified
	verified bool
	remote   string
	slots    chan struct{} // one per delivery not yet answered
	wake     chan struct{} // buffer 1: results or go-away to send

	mu        sync.Mutex
	results   []*delivery.Result
	goAway    bool // to send, or sent
	goAwaySet time.Time
	lastRead  time.Time
}

func (d *deliverer) Deliver(stream grpc.BidiStreamingServer[delivery.Deliveries, delivery.Results]) error {
	b := d.b
	ctx := stream.Context()
	st := &inStream{b: b, stream: stream, ctx: ctx, slots: make(chan struct{}, b.opts.maxUnanswered),
		wake: make(chan struct{}, 1), lastRead: time.Now()}
	st.identity, st.verified = auth.PeerIdentity(ctx)
	if p, ok := grpcpeer.FromContext(ctx); ok && p.Addr != nil {
		st.remote = p.Addr.String()
	}
	if err := b.authenticate(ctx, st.verified); err != nil {
		b.opts.logger.Warn("direct broker: refused a publisher", "remote", st.remote, "error", err)
		return err
	}
	if !b.addStream(st) {
		return status.Error(codes.Unavailable, "subscriber node's broker is closed")
	}
	defer b.removeStream(st)
	readDone := make(chan error, 1)
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		readDone <- st.read()
	}()
	return st.serve(readDone)
}

// authenticate decides whether a publisher's stream is let in: a client
// certificate the server verified, or the broker token; with neither
// configured, everyone (development mode, warned about at Subscribe).
func (b *directBroker) authenticate(ctx context.Context, verified bool) error {
	if verified {
		return nil
	}
	if b.opts.token != "" {
		if tokenOK(ctx, b.opts.token) {
			return nil
		}
		return status.Error(codes.Unauthenticated, "direct broker: broker token required")
	}
	switch {
	case b.opts.mutualTLS:
		return status.Error(codes.Unauthenticated, "direct broker: a verified client certificate is required")
	case b.opts.serverTLS != nil:
		return status.Error(codes.Unauthenticated, ErrUnauthenticated.Error())
	}
	return nil
}

// tokenOK reports whether the call carries "authorization: Bearer
// token"; the comparison takes the same time whatever was sent.
func tokenOK(ctx context.Context, token string) bool {
	vals := metadata.ValueFromIncomingContext(ctx, "authorization")
	if len(vals) != 1 {
		return false
	}
	got, ok := strings.CutPrefix(vals[0], "Bearer ")
	return ok && subtle.ConstantTimeCompare([]byte(got), []byte(token)) == 1
}

func (b *directBroker) addStream(st *inStream) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return false
	}
	b.streams[st] = struct{}{}
	b.streamWG.Add(1)
	if len(b.subs) == 0 {
		// Nothing here to deliver to: the publisher hears NOT_FOUND for
		// what it sent and opens a new stream later.
		st.sendGoAway()
	}
	return true
}

func (b *directBroker) removeStream(st *inStream) {
	b.mu.Lock()
	delete(b.streams, st)
	b.mu.Unlock()
	b.streamWG.Done()
}

// goAway tells every publisher's stream to go away.
func (b *directBroker) goAway() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for st := range b.streams {
		st.sendGoAway()
	}
}

// goAwayIfIdle tells publishers' streams to go away when the broker has no
// subscription left, so that a node's graceful stop is not held up by
// streams nothing will use.
func (b *directBroker) goAwayIfIdle() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.subs) > 0 {
		return
	}
	for st := range b.streams {
		st.sendGoAway()
	}
}

func (st *inStream) sendGoAway() {
	st.mu.Lock()
	if !st.goAway {
		st.goAway, st.goAwaySet = true, time.Now()
	}
	st.mu.Unlock()
	st.signal()
}

func (st *inStream) signal() {
	select {
	case st.wake <- struct{}{}:
	default:
	}
}

// read takes the publisher's deliveries until the stream ends: io.EOF
// when the publisher half-closed it.
func (st *inStream) read() error {
	for {
		msg, err := st.stream.Recv()
		if err != nil {
			return err
		}
		st.mu.Lock()
		st.lastRead = time.Now()
		st.mu.Unlock()
		for _, d := range msg.GetDeliveries() {
			select {
			case st.slots <- struct{}{}:
			case <-st.ctx.Done():
				return st.ctx.Err()
			}
			st.deliver(d)
		}
	}
}

// deliver hands one delivery to its subscription.
func (st *inStream) deliver(d *delivery.Delivery) {
	id := d.GetId()
	b := st.b
	b.mu.Lock()
	s := b.subs[d.GetSubscription()]
	b.mu.Unlock()
	switch {
	case s == nil:
		st.answer(id, result{code: codes.NotFound, msg: "no such subscription on this node"})
		return
	case !s.admits(st.identity, st.verified):
		b.opts.logger.Warn("direct broker: refused a publisher not allowed on the topic", "topic", s.topic, "publisher", st.identity, "remote", st.remote)
		st.answer(id, result{code: codes.PermissionDenied, msg: "publisher may not publish to " + s.topic})
		return
	}
	// The handler's context: the stream's (it carries the publisher's
	// identity and ends with the stream), with the publisher's deadline
	// when that is shorter than the broker's own request timeout.
	var ctx context.Context
	var cancel context.CancelFunc
	if timeout := time.Duration(d.GetTimeoutMs()) * time.Millisecond; timeout > 0 && timeout < b.opts.requestTimeout {
		ctx, cancel = context.WithTimeout(st.ctx, timeout)
	} else {
		ctx, cancel = context.WithCancel(st.ctx)
	}
	reply := func(r result) {
		cancel()
		st.answer(id, r)
	}
	s.take(ctx, cancel, d.GetTopic(), &broker.Message{Header: headerMap(d.GetHeader()), Body: d.GetBody()}, reply)
}

// answer queues a delivery's result to be sent.
func (st *inStream) answer(id uint64, r result) {
	st.mu.Lock()
	st.results = append(st.results, &delivery.Result{Id: id, Code: uint32(r.code), Message: r.msg})
	st.mu.Unlock()
	<-st.slots
	st.signal()
}

// serve sends results until the stream is done: the publisher half-closed
// it and everything it sent is answered, it broke, or it was told to go
// away and did not within the request timeout. A stream with nothing in
// flight and nothing received for the idle timeout is told to go away.
func (st *inStream) serve(readDone <-chan error) error {
	b := st.b
	tick := time.NewTicker(max(min(b.opts.idleTimeout, b.opts.requestTimeout)/4, time.Millisecond))
	defer tick.Stop()
	readEnded := false
	sentGoAway := false
	for {
		select {
		case <-st.wake:
		case err := <-readDone:
			if !errors.Is(err, io.EOF) {
				return err // broken or cancelled: nothing can be answered
			}
			readEnded = true
		case now := <-tick.C:
			st.mu.Lock()
			idle := len(st.slots) == 0 && now.Sub(st.lastRead) > b.opts.idleTimeout
			late := st.goAway && now.Sub(st.goAwaySet) > b.opts.requestTimeout
			st.mu.Unlock()
			if late {
				// A publisher that does not go away (or half a message that
				// never completes): end it, freeing what it holds.
				return status.Error(codes.Unavailable, "direct broker: stream did not go away in time")
			}
			if idle {
				st.sendGoAway()
			}
		case <-st.ctx.Done():
			return st.ctx.Err()
		}
		st.mu.Lock()
		out := &delivery.Results{Results: st.results}
		st.results = nil
		if st.goAway && !sentGoAway {
			out.GoAway, sentGoAway = true, true
		}
		st.mu.Unlock()
		if len(out.Results) > 0 || out.GoAway {
			if err := st.stream.Send(out); err != nil {
				return err
			}
		}
		if readEnded && len(st.slots) == 0 {
			st.mu.Lock()
			more := len(st.results) > 0
			st.mu.Unlock()
			if !more {
				return nil
			}
		}
	}
}
