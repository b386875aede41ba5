package http

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/microgrpc/microgrpc/broker"
	"github.com/microgrpc/microgrpc/resolver"
)

// peer is this broker's link to another broker process, which may hold
// many subscriptions: one connection, made on first use and again after
// it breaks, carrying every delivery to that process.
type peer struct {
	b      *httpBroker
	scheme string
	addr   string

	mu       sync.Mutex // held while dialing: later senders wait for the dial
	conn     *peerConn
	lastUsed int64 // unix nanoseconds; guarded by mu
}

// peerConn is one connection to a peer, with the deliveries waiting for
// their results.
type peerConn struct {
	p  *peer
	nc net.Conn
	fw frameWriter

	mu      sync.Mutex
	seq     uint64
	pending map[uint64]*pending
	err     error // why the connection broke; set once
}

// pending is one delivery waiting for its result.
type pending struct {
	ctx     context.Context
	timeout time.Duration // bounds the wait when > 0, on top of ctx
	done    chan error    // buffer 1: the result is sent once and never blocks
	pc      *peerConn     // nil for deliveries to our own subscriptions
	seq     uint64
}

func newPending(ctx context.Context) *pending {
	return &pending{ctx: ctx, done: make(chan error, 1)}
}

// timers are the wait timers of deliveries, reused: one per delivery in
// flight instead of a context with a deadline each.
var timers = sync.Pool{New: func() any {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return t
}}

// wait returns the delivery's result, or ctx's error, or a deadline error
// once the timeout passed without an answer.
func (p *pending) wait() error {
	var expired <-chan time.Time // nil without a timeout: never ready
	if p.timeout > 0 {
		t := timers.Get().(*time.Timer)
		t.Reset(p.timeout)
		defer func() {
			t.Stop()
			timers.Put(t)
		}()
		expired = t.C
	}
	select {
	case err := <-p.done:
		return err
	case <-p.ctx.Done():
		p.forget()
		return p.ctx.Err()
	case <-expired:
		p.forget()
		return fmt.Errorf("no answer within %v: %w", p.timeout, context.DeadlineExceeded)
	}
}

func (p *pending) forget() {
	if p.pc != nil {
		p.pc.forget(p.seq)
	}
}

// peer returns the link to the broker process at a subscriber's address.
func (b *httpBroker) peer(n resolver.Node) *peer {
	scheme := n.Metadata["scheme"]
	if scheme != "https" {
		scheme = "http"
	}
	key := scheme + "://" + n.Address
	b.mu.Lock()
	defer b.mu.Unlock()
	p := b.peers[key]
	if p == nil {
		p = &peer{b: b, scheme: scheme, addr: n.Address}
		b.peers[key] = p
	}
	return p
}

// send starts one delivery to the peer; its result comes through the
// returned pending.
func (p *peer) send(ctx context.Context, d delivery, timeout time.Duration) *pending {
	pd := newPending(ctx)
	pd.timeout = timeout
	pc, err := p.connect(ctx)
	if err != nil {
		pd.done <- err
		return pd
	}
	pc.mu.Lock()
	if pc.err != nil {
		pc.mu.Unlock()
		pd.done <- pc.err
		return pd
	}
	pc.seq++
	pd.pc, pd.seq = pc, pc.seq
	pc.pending[pd.seq] = pd
	pc.mu.Unlock()
	if err := pc.fw.write(pd.seq, deliverySize(d), func(b []byte) []byte { return appendDelivery(b, d) }); err != nil {
		pc.fail(err)
	}
	return pd
}

// connect returns the peer's connection, dialing it when there is none.
func (p *peer) connect(ctx context.Context) (*peerConn, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.lastUsed = time.Now().UnixNano()
	if p.conn != nil {
		return p.conn, nil
	}
	nc, rd, err := p.dial(ctx)
	if err != nil {
		return nil, fmt.Errorf("connect to %s://%s: %w", p.scheme, p.addr, err)
	}
	pc := &peerConn{p: p, nc: nc, fw: frameWriter{conn: nc, timeout: p.b.opts.requestTimeout}, pending: map[uint64]*pending{}}
	b := p.b
	b.mu.Lock()
	closed := b.closed
	if !closed {
		b.wg.Add(1)
	}
	b.mu.Unlock()
	if closed {
		nc.Close()
		return nil, broker.ErrClosed
	}
	go func() {
		defer b.wg.Done()
		pc.read(rd)
	}()
	p.conn = pc
	return pc, nil
}

// dial connects and upgrades an HTTP/1.1 request to the delivery
// protocol. The returned reader holds whatever the peer sent after its
// answer.
func (p *peer) dial(ctx context.Context) (net.Conn, *bufio.Reader, error) {
	ctx, cancel := context.WithTimeout(ctx, p.b.opts.requestTimeout)
	defer cancel()
	var nc net.Conn
	var err error
	if p.scheme == "https" {
		cfg := p.b.opts.clientTLS.Clone()
		if cfg == nil {
			cfg = &tls.Config{}
		}
		cfg.NextProtos = []string{"http/1.1"}
		nc, err = (&tls.Dialer{Config: cfg}).DialContext(ctx, "tcp", p.addr)
	} else {
		nc, err = (&net.Dialer{}).DialContext(ctx, "tcp", p.addr)
	}
	if err != nil {
		return nil, nil, err
	}
	if dl, ok := ctx.Deadline(); ok {
		nc.SetDeadline(dl)
	}
	auth := ""
	if t := p.b.opts.token; t != "" {
		auth = "Authorization: Bearer " + t + "\r\n"
	}
	req := "GET " + streamPath + " HTTP/1.1\r\nHost: " + p.addr + "\r\nConnection: Upgrade\r\nUpgrade: " + upgradeProtocol + "\r\n" + auth + "\r\n"
	if _, err := io.WriteString(nc, req); err != nil {
		nc.Close()
		return nil, nil, err
	}
	rd := bufio.NewReaderSize(nc, 64<<10)
	rsp, err := http.ReadResponse(rd, nil)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	rsp.Body.Close()
	if rsp.StatusCode != http.StatusSwitchingProtocols {
		nc.Close()
		return nil, nil, fmt.Errorf("subscriber refused the delivery protocol: %s", rsp.Status)
	}
	nc.SetDeadline(time.Time{})
	return nc, rd, nil
}

// read hands each result to its delivery until the connection breaks.
func (pc *peerConn) read(rd *bufio.Reader) {
	for {
		seq, n, err := readFrameHeader(rd)
		if err == nil && n > maxResultBytes {
			err = fmt.Errorf("result of %d bytes", n)
		}
		var buf []byte
		if err == nil {
			buf = make([]byte, n)
			_, err = io.ReadFull(rd, buf)
		}
		var res result
		if err == nil {
			res, err = decodeResult(buf)
		}
		if err != nil {
			pc.fail(err)
			return
		}
		pc.mu.Lock()
		pd := pc.pending[seq]
		delete(pc.pending, seq)
		pc.mu.Unlock()
		if pd != nil {
			pd.done <- res.error()
		}
	}
}

// maxResultBytes bounds a result frame: a code and a cut error text.
const maxResultBytes = 2 * maxErrorText

// forget drops a delivery whose publisher stopped waiting.
func (pc *peerConn) forget(seq uint64) {
	pc.mu.Lock()
	delete(pc.pending, seq)
	pc.mu.Unlock()
}

// fail breaks the connection: every delivery waiting on it fails with
// err, and the next send dials again.
func (pc *peerConn) fail(err error) {
	pc.mu.Lock()
	if pc.err != nil {
		pc.mu.Unlock()
		return
	}
	pc.err = fmt.Errorf("connection to %s://%s: %w", pc.p.scheme, pc.p.addr, err)
	pending := pc.pending
	pc.pending = nil
	pc.mu.Unlock()
	pc.nc.Close()
	for _, pd := range pending {
		pd.done <- pc.err
	}
	p := pc.p
	p.mu.Lock()
	if p.conn == pc {
		p.conn = nil
	}
	p.mu.Unlock()
}

// close breaks the connection, if any, e.g. when idle or on Disconnect.
func (p *peer) close(err error) {
	p.mu.Lock()
	pc := p.conn
	p.mu.Unlock()
	if pc != nil {
		pc.fail(err)
	}
}

func (p *peer) idleSince(cutoff int64) bool {
	if !p.mu.TryLock() {
		return false // dialing
	}
	defer p.mu.Unlock()
	if p.lastUsed >= cutoff {
		return false
	}
	if pc := p.conn; pc != nil {
		pc.mu.Lock()
		busy := len(pc.pending) > 0
		pc.mu.Unlock()
		return !busy
	}
	return true
}
