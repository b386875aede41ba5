package direct

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"

	"github.com/microgrpc/microgrpc/broker"
	"github.com/microgrpc/microgrpc/internal/grpclimits"
	"github.com/microgrpc/microgrpc/proto/delivery"
)

// peer is this broker's link to a subscriber node, which may hold many
// subscriptions: one gRPC connection (made on first use; grpc-go
// reconnects it) and one Deliver stream at a time on it, made again after
// it breaks or goes away.
type peer struct {
	b    *directBroker
	addr string
	// lastUsed is the unix nanoseconds of the last Publish that took the
	// peer; written under b.mu (b.peer) and read by the evictor under
	// b.mu, so a peer just taken is never evicted.
	lastUsed atomic.Int64

	mu     sync.Mutex
	cc     *grpc.ClientConn
	cur    *outStream // the stream new deliveries go on; nil: make one
	closed error      // set once the peer is closed
}

// peer returns the link to the subscriber node at addr.
func (b *directBroker) peer(addr string) *peer {
	b.mu.Lock()
	defer b.mu.Unlock()
	p := b.peers[addr]
	if p == nil {
		p = &peer{b: b, addr: addr}
		b.peers[addr] = p
	}
	p.lastUsed.Store(time.Now().UnixNano())
	return p
}

// tokenCreds sends the broker token with each stream; grpc-go refuses to
// send it over a connection without TLS unless insecure is set.
type tokenCreds struct {
	token    string
	insecure bool
}

func (c tokenCreds) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + c.token}, nil
}

func (c tokenCreds) RequireTransportSecurity() bool { return !c.insecure }

// connLocked returns the peer's connection, making it. Caller must hold
// p.mu.
func (p *peer) connLocked() (*grpc.ClientConn, error) {
	if p.cc != nil {
		return p.cc, nil
	}
	creds := insecure.NewCredentials()
	if cfg := p.b.clientTLS(); cfg != nil {
		creds = credentials.NewTLS(cfg)
	}
	opts := []grpc.DialOption{grpc.WithTransportCredentials(creds),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: grpclimits.KeepaliveTime, Timeout: grpclimits.KeepaliveTimeout, PermitWithoutStream: true}),
		// What comes back is small results: fixed windows turn off
		// grpc-go's bandwidth probing, a PING frame (and a write) for
		// every burst of data received.
		grpc.WithInitialWindowSize(streamWindow), grpc.WithInitialConnWindowSize(streamWindow)}
	if t := p.b.opts.token; t != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(tokenCreds{token: t, insecure: p.b.opts.insecureToken}))
	}
	cc, err := grpc.NewClient("passthrough:///"+p.addr, opts...)
	if err != nil {
		return nil, err
	}
	p.cc = cc
	return cc, nil
}

// send starts one delivery to the peer; its result comes through the
// returned pending. It never blocks on the network.
func (p *peer) send(ctx context.Context, d *delivery.Delivery, timeout time.Duration) *pending {
	pd := newPending(ctx)
	pd.timeout = timeout
	pd.deadline = time.Now().Add(timeout).UnixNano()
	for {
		out, err := p.stream()
		if err != nil {
			pd.done <- err
			return pd
		}
		if out.add(pd, d) {
			return pd
		}
		// That stream broke or is going away: the next one takes it.
	}
}

// stream returns the stream new deliveries go on, starting one.
func (p *peer) stream() (*outStream, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed != nil {
		return nil, p.closed
	}
	if p.cur != nil {
		return p.cur, nil
	}
	cc, err := p.connLocked()
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", p.addr, err)
	}
	b := p.b
	b.mu.Lock()
	closed := b.closed
	if !closed {
		b.wg.Add(2)
	}
	b.mu.Unlock()
	if closed {
		return nil, broker.ErrClosed
	}
	ctx, cancel := context.WithCancel(b.ctx)
	out := &outStream{p: p, cancel: cancel, pending: map[uint64]*pending{}, wake: make(chan struct{}, 1), opened: make(chan struct{})}
	p.cur = out
	b.mu.Lock()
	b.outs[out] = struct{}{}
	b.mu.Unlock()
	go func() {
		defer b.wg.Done()
		out.run(ctx, cc)
	}()
	go func() {
		defer b.wg.Done()
		<-out.opened
		out.receive()
	}()
	return out, nil
}

// close fails what the peer has in flight with err and closes its
// connection, e.g. when idle or on Disconnect.
func (p *peer) close(err error) {
	p.mu.Lock()
	if p.closed == nil {
		p.closed = err
	}
	cur, cc := p.cur, p.cc
	p.cur, p.cc = nil, nil
	p.mu.Unlock()
	if cur != nil {
		cur.fail(err)
	}
	if cc != nil {
		cc.Close()
	}
}

// detach makes the next delivery open a new stream instead of out.
func (p *peer) detach(out *outStream) {
	p.mu.Lock()
	if p.cur == out {
		p.cur = nil
	}
	p.mu.Unlock()
}

// idleSince reports whether nothing took the peer since cutoff and nothing
// is in flight. Caller must hold b.mu.
//
// Lock order: p.mu before b.mu (stream); b.mu before out.mu.
func (p *peer) idleSince(cutoff int64) bool {
	if p.lastUsed.Load() >= cutoff {
		return false
	}
	// TryLock: stream holds p.mu while it takes b.mu (lock order p.mu,
	// then b.mu); a peer busy making a stream is not idle anyway.
	if !p.mu.TryLock() {
		return false
	}
	cur := p.cur
	p.mu.Unlock()
	return cur == nil || cur.inFlight() == 0
}

// outStream is one Deliver stream to a peer: its deliveries waiting to be
// sent, and those waiting for their results.
type outStream struct {
	p      *peer
	cancel context.CancelFunc
	wake   chan struct{} // buffer 1: deliveries queued
	opened chan struct{} // closed once the stream exists (or failed)
	stream grpc.BidiStreamingClient[delivery.Deliveries, delivery.Results]

	// sendStart is the unix nanoseconds at which the Send in progress
	// began, 0 when none is: written by the writer, read by the expirer.
	sendStart atomic.Int64

	mu       sync.Mutex
	nextID   uint64
	pending  map[uint64]*pending
	queue    []*delivery.Delivery
	draining bool  // told to go away: takes nothing new
	err      error // why it broke; set once
}

// add queues d on the stream, or reports that the stream takes nothing
// new any more.
func (out *outStream) add(pd *pending, d *delivery.Delivery) bool {
	out.mu.Lock()
	if out.err != nil || out.draining {
		out.mu.Unlock()
		return false
	}
	out.nextID++
	d.Id = out.nextID
	pd.out, pd.id = out, d.Id
	out.pending[d.Id] = pd
	out.queue = append(out.queue, d)
	out.mu.Unlock()
	out.signal()
	return true
}

func (out *outStream) signal() {
	select {
	case out.wake <- struct{}{}:
	default:
	}
}

func (out *outStream) inFlight() int {
	out.mu.Lock()
	defer out.mu.Unlock()
	return len(out.pending)
}

// streamWindow is the fixed HTTP/2 flow-control window of the broker's
// connections and streams: a few batches of deliveries in flight.
const streamWindow = 4 << 20

// maxBatchBytes bounds a Deliveries message that carries more than one
// delivery, well under the 4 MiB a gRPC server receives by default.
const maxBatchBytes = 1 << 20

// run opens the stream and sends queued deliveries, everything queued
// since the last send in one message, until the stream ends. Publishers
// only queue and wait: a Send that blocks (a node that stopped reading
// fills its flow-control window) holds up this goroutine, never a
// publisher beyond its own context; the expirer breaks such a stream
// after the request timeout.
func (out *outStream) run(ctx context.Context, cc *grpc.ClientConn) {
	stream, err := delivery.NewDelivererClient(cc).Deliver(ctx)
	if err != nil {
		out.fail(err)
		close(out.opened)
		return
	}
	out.mu.Lock()
	out.stream = stream
	out.mu.Unlock()
	close(out.opened)
	var batch []*delivery.Delivery
	for {
		select {
		case <-ctx.Done():
			return
		case <-out.wake:
		}
		// Let the publishers that are about to queue a delivery do so, so
		// that one message carries them all (grpc-go's writer yields the
		// same way before it flushes): with 16 publishers this halves the
		// messages sent.
		runtime.Gosched()
		for {
			out.mu.Lock()
			n, size := 0, 0
			for n < len(out.queue) && (n == 0 || size+wireSize(out.queue[n]) <= maxBatchBytes) {
				size += wireSize(out.queue[n])
				n++
			}
			batch = append(batch[:0], out.queue[:n]...)
			clear(out.queue[:n])
			out.queue = out.queue[n:]
			if len(out.queue) == 0 {
				out.queue = nil
			}
			draining := out.draining
			out.mu.Unlock()
			if len(batch) == 0 {
				if draining {
					// Everything is sent: half-close; the results of what
					// was sent still come, then the node ends the stream.
					_ = stream.CloseSend()
					return
				}
				break
			}
			out.sendStart.Store(time.Now().UnixNano())
			err := stream.Send(&delivery.Deliveries{Deliveries: batch})
			out.sendStart.Store(0)
			if err != nil {
				out.fail(err)
				return
			}
			clear(batch)
		}
	}
}

// wireSize is what d adds to a Deliveries message, about.
func wireSize(d *delivery.Delivery) int {
	n := len(d.Body) + len(d.Topic) + len(d.Subscription) + 32
	for _, kv := range d.Header {
		n += len(kv) + 4
	}
	return n
}

// receive hands each result to its delivery until the stream ends.
func (out *outStream) receive() {
	out.mu.Lock()
	stream := out.stream
	out.mu.Unlock()
	if stream == nil {
		return
	}
	for {
		rs, err := stream.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = errors.New("the node ended the stream")
			}
			out.fail(err)
			return
		}
		for _, r := range rs.GetResults() {
			out.mu.Lock()
			pd := out.pending[r.GetId()]
			delete(out.pending, r.GetId())
			out.mu.Unlock()
			if pd != nil {
				pd.done <- result{code: codesOf(r.GetCode()), msg: r.GetMessage()}.error()
			}
		}
		if rs.GetGoAway() {
			out.mu.Lock()
			out.draining = true
			out.mu.Unlock()
			out.p.detach(out)
			out.signal() // the sender half-closes once the queue is sent
		}
	}
}

// fail ends the stream: every delivery waiting on it fails with err, and
// the next send opens a new one.
func (out *outStream) fail(err error) {
	out.mu.Lock()
	if out.err != nil {
		out.mu.Unlock()
		return
	}
	out.err = fmt.Errorf("stream to %s: %w", out.p.addr, err)
	pending := out.pending
	out.pending = nil
	out.queue = nil
	out.mu.Unlock()
	out.p.detach(out)
	out.cancel()
	b := out.p.b
	b.mu.Lock()
	delete(b.outs, out)
	b.mu.Unlock()
	for _, pd := range pending {
		pd.done <- out.err
	}
}

// forget drops a delivery whose publisher stopped waiting.
func (out *outStream) forget(id uint64) {
	out.mu.Lock()
	delete(out.pending, id)
	out.mu.Unlock()
}

// pending is one delivery waiting for its result.
type pending struct {
	ctx      context.Context
	timeout  time.Duration // how long the result may take (the expirer enforces it)
	deadline int64         // unix nanoseconds: now + timeout when sent
	done     chan error    // buffer 1: the result is sent once and never blocks
	out      *outStream    // nil for deliveries to our own subscriptions
	id       uint64
}

func newPending(ctx context.Context) *pending {
	return &pending{ctx: ctx, done: make(chan error, 1)}
}

// wait returns the delivery's result, or ctx's error. A delivery to
// another node that gets no answer within its timeout is failed by the
// broker's expirer (expireLocked), so no timer is made per delivery.
func (p *pending) wait() error {
	select {
	case err := <-p.done:
		return err
	case <-p.ctx.Done():
		p.forget()
		return p.ctx.Err()
	}
}

// expire fails the deliveries on out whose deadline passed by now, and
// breaks the stream when a Send has been blocked for longer than the
// request timeout (a node that stopped reading).
func (out *outStream) expire(now int64, timeout time.Duration) {
	if start := out.sendStart.Load(); start != 0 && time.Duration(now-start) > timeout {
		out.fail(fmt.Errorf("node stopped reading: a send blocked for over %v", timeout))
		return
	}
	var late []*pending
	out.mu.Lock()
	for id, pd := range out.pending {
		if pd.deadline <= now {
			delete(out.pending, id)
			late = append(late, pd)
		}
	}
	out.mu.Unlock()
	for _, pd := range late {
		pd.done <- fmt.Errorf("no answer within %v: %w", pd.timeout, context.DeadlineExceeded)
	}
}

func (p *pending) forget() {
	if p.out != nil {
		p.out.forget(p.id)
	}
}

// codesOf is a result's code as a gRPC code; a value no gRPC code has
// (a subscriber of another make) stays as it is and prints as a number.
func codesOf(c uint32) codes.Code { return codes.Code(c) }
