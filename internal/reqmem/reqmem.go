// Package reqmem bounds the memory a gRPC server holds for requests in
// flight: a grpc-go stats handler, with a tap handle, that admits a unary
// or server-streaming call's request only while the bytes reserved by the
// others leave room, shares that room fairly between connections, and
// takes it back from requests that do not come.
//
// grpc-go reads a request whole before the handler runs, and offers no
// hook once the request's length is known, nor as its bytes arrive: a
// stats handler sees the request (InPayload) only once all of it was read.
// It does run the stats handler's Begin on the call's own goroutine before
// it asks the client for the request. So Begin waits there for a
// reservation of the largest request the server accepts, within the
// call's context; while it waits the client can send no more than the
// stream's initial flow-control window (the server must fix it with
// grpc.InitialWindowSize, which also turns off grpc-go's growing of
// windows). Once the request arrived the reservation shrinks to its size,
// held until the call ends, since the handler holds the decoded request.
//
// A reservation is not memory until its request comes, and a client may
// open streams and never send one; grpc-go gives no sign of a request's
// bytes before the last one, so the gate judges connections by the
// requests they deliver, and by time:
//
//   - A connection holds at most a quarter of the budget (at least one
//     request); its further calls wait behind its own, not anyone else's.
//   - Room goes first to the waiting connection that holds least, then to
//     the one that delivered a request last, then to the one waiting
//     longest: the waiting calls of one connection are one turn, not one
//     each, and a client that delivers goes before streams that never did.
//   - While a call waits, a connection that holds at least one request
//     more than the waiting call's connection, and has kept the gate
//     waiting for its wait (New) without delivering a request, has its
//     oldest reservation taken back: that call is cancelled (its client
//     sees Canceled). A connection keeps the gate waiting from its first
//     reservation after it delivered; once two of its reservations were
//     taken back, or one of its calls ended before its request came (a
//     client that resets its idle streams), its new reservations go on
//     from where the old ones stopped, until it delivers a request.
//     Without anyone waiting a reservation may wait as long as its call
//     lasts: it costs nobody anything.
//
// So streams that never send their request keep other connections'
// calls waiting for at most about the wait, a few times over while their
// connections first get room, and not at all once each was taken back
// from; the bound stays whole throughout. The price is that a client that
// takes longer than the wait to deliver a request, while a connection
// that holds less waits, loses it (Canceled) and may retry.
//
// Cancelling a call that grpc-go is reading needs the stream's own
// context, which only a tap handle (grpc.InTapHandle) can set: Tap makes
// it, and a call that did not pass the tap is not gated.
//
// Calls to grpc.health.v1.Health and to reflection are never gated: their
// requests are small, and a health check must answer while the budget is
// full. Client-streaming and bidirectional calls are not gated either:
// they read one message at a time, each bounded by the maximum message
// size.
package reqmem

import (
	"container/list"
	"context"
	"errors"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/tap"
)

// Gate is the stats handler and tap handle; the zero value is not usable,
// make one with New.
type Gate struct {
	per       int64         // reserved for a request not received yet
	limit     int64         // for all connections
	connLimit int64         // for one connection
	wait      time.Duration // how long a reservation may wait while others wait

	mu      sync.Mutex
	used    int64
	freeing int64 // of used, held by calls taken back until they end
	peak    int64
	waiting list.List // of *conn with calls waiting
	holding list.List // of *conn with reservations waiting for their request
	timer   *time.Timer
}

// New returns a gate of limit bytes that reserves perRequest (the largest
// request the server accepts) for each request until it has arrived; a
// reservation that waited wait for its request may be taken back for a
// call of a connection that holds less.
func New(limit, perRequest int64, wait time.Duration) *Gate {
	per := min(perRequest, limit)
	return &Gate{limit: limit, per: per, connLimit: max(per, limit/4), wait: wait}
}

// Used reports the bytes reserved now.
func (g *Gate) Used() int64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.used
}

// Peak reports the most bytes reserved at once so far.
func (g *Gate) Peak() int64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.peak
}

// conn is one connection's share.
type conn struct {
	held      int64         // reserved by its calls, waiting or arrived
	waiters   list.List     // of *call waiting for room, oldest first
	pending   list.List     // of *call reserved and waiting for the request, oldest first
	inWaiting *list.Element // in Gate.waiting
	inHolding *list.Element // in Gate.holding
	// since is when the connection last delivered a request, or got a
	// reservation while it owed none: how long it has kept the gate
	// waiting. strikes counts its reservations taken back since it last
	// delivered a request; from the second one on, and once a reservation
	// of it ended without its request (a client that resets its idle
	// streams), a new reservation does not start it afresh.
	since     time.Time
	strikes   int
	delivered time.Time // when it last delivered a request
}

type connKey struct{}

// maxStrikes is how many reservations of a connection may be taken back
// before its new ones stop starting it afresh.
const maxStrikes = 2

func (g *Gate) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context {
	return context.WithValue(ctx, connKey{}, &conn{})
}

func (g *Gate) HandleConn(context.Context, stats.ConnStats) {}

type callKey struct{}

// call is one gated call; the gate's lock guards the fields after cancel.
// It is the context of the call's stream, so that a call costs the
// cancellable context and itself.
type call struct {
	context.Context
	cancel context.CancelCauseFunc
	conn   *conn

	state    state
	reserved int64
	queued   time.Time     // when it began to wait
	elem     *list.Element // in conn.waiters or conn.pending
	ready    chan struct{} // closed when granted, made when it waits
}

type state uint8

const (
	idle      state = iota // not gated (yet)
	waiting                // for room
	pending                // reserved, waiting for its request
	arrived                // the request is here
	takenBack              // its reservation was taken back
)

func (c *call) Value(key any) any {
	if key == (callKey{}) {
		return c
	}
	return c.Context.Value(key)
}

// callOf returns the call of ctx, nil for a context Tap did not make.
func callOf(ctx context.Context) *call {
	c, _ := ctx.Value(callKey{}).(*call)
	return c
}

// ErrWithdrawn is the cause of the context of a call whose reservation was
// taken back (context.Cause).
var ErrWithdrawn = errors.New("reqmem: the request did not arrive in time while other calls waited for room")

// Tap is the tap handle (grpc.InTapHandle) that makes a gated call's
// stream context, cancellable by the gate. grpc-go runs it on the
// connection's reader with the transport's lock held: it only allocates.
func (g *Gate) Tap(ctx context.Context, info *tap.Info) (context.Context, error) {
	if exempt(info.FullMethodName) {
		return ctx, nil
	}
	cn, _ := ctx.Value(connKey{}).(*conn)
	if cn == nil {
		return ctx, nil // the gate is not this server's stats handler
	}
	cctx, cancel := context.WithCancelCause(ctx)
	return &call{Context: cctx, cancel: cancel, conn: cn}, nil
}

// exempt reports the methods never gated: health and reflection.
func exempt(method string) bool {
	return strings.HasPrefix(method, "/grpc.health.v1.Health/") || strings.HasPrefix(method, "/grpc.reflection.")
}

func (g *Gate) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context { return ctx }

// HandleRPC looks at the three events it needs, and looks the call up
// only for them: grpc-go sends every event of every call.
func (g *Gate) HandleRPC(ctx context.Context, s stats.RPCStats) {
	switch s := s.(type) {
	case *stats.Begin:
		if s.IsClientStream || s.Client {
			return
		}
		if c := callOf(ctx); c != nil {
			g.acquire(ctx, c)
		}
	case *stats.InPayload:
		if s.Client {
			return
		}
		if c := callOf(ctx); c != nil {
			g.arrived(c, int64(s.Length))
		}
	case *stats.End:
		if c := callOf(ctx); c != nil {
			g.end(c)
		}
	}
}

// acquire reserves g.per for c, waiting in turn; when ctx ends first the
// call goes on unreserved, to fail on its ended context.
func (g *Gate) acquire(ctx context.Context, c *call) {
	g.mu.Lock()
	if c.state != idle {
		g.mu.Unlock()
		return
	}
	cn := c.conn
	c.state = waiting
	if g.waiting.Len() == 0 && g.used+g.per <= g.limit && cn.held+g.per <= g.connLimit {
		g.grantLocked(cn, c, time.Now())
		g.mu.Unlock()
		return
	}
	c.queued = time.Now()
	c.elem = cn.waiters.PushBack(c)
	if cn.inWaiting == nil {
		cn.inWaiting = g.waiting.PushBack(cn)
	}
	g.scheduleLocked()
	if c.state == waiting {
		c.ready = make(chan struct{})
	}
	ready := c.ready
	g.mu.Unlock()
	if ready == nil {
		return // granted at once
	}
	select {
	case <-ready:
	case <-ctx.Done():
		g.mu.Lock()
		switch c.state {
		case waiting:
			g.unwaitLocked(c)
			c.state = idle
		case pending:
			// Granted meanwhile: give it back.
			g.unpendLocked(c)
			cn.strikes = maxStrikes
			g.releaseLocked(c)
			c.state = idle
		}
		g.scheduleLocked()
		g.mu.Unlock()
	}
}

// arrived shrinks c's reservation to its request's n bytes.
func (g *Gate) arrived(c *call, n int64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if c.state != pending {
		return // not gated, or taken back: that keeps its reservation to the end
	}
	g.unpendLocked(c)
	now := time.Now()
	c.conn.since, c.conn.strikes, c.conn.delivered = now, 0, now
	c.state = arrived
	delta := n - c.reserved
	c.reserved = n
	g.used += delta
	c.conn.held += delta
	g.peak = max(g.peak, g.used)
	if delta < 0 {
		g.scheduleLocked()
	}
}

// end gives back what c holds.
func (g *Gate) end(c *call) {
	g.mu.Lock()
	switch c.state {
	case pending:
		g.unpendLocked(c)
		c.conn.strikes = maxStrikes
		fallthrough
	case takenBack:
		// Its reservation stayed counted until now: whatever of its
		// request came is memory until the call is gone.
		g.freeing -= c.reserved
		fallthrough
	case arrived:
		g.releaseLocked(c)
		g.scheduleLocked()
	}
	c.state = idle
	g.mu.Unlock()
}

func (g *Gate) grantLocked(cn *conn, c *call, now time.Time) {
	if cn.pending.Len() == 0 && cn.strikes < maxStrikes {
		cn.since = now
	}
	c.state = pending
	c.reserved = g.per
	c.elem = cn.pending.PushBack(c)
	if cn.inHolding == nil {
		cn.inHolding = g.holding.PushBack(cn)
	}
	g.used += g.per
	g.peak = max(g.peak, g.used)
	cn.held += g.per
	if c.ready != nil {
		close(c.ready)
	}
}

func (g *Gate) releaseLocked(c *call) {
	g.used -= c.reserved
	c.conn.held -= c.reserved
	c.reserved = 0
}

// unwaitLocked takes waiting c off its connection's queue.
func (g *Gate) unwaitLocked(c *call) {
	cn := c.conn
	cn.waiters.Remove(c.elem)
	c.elem = nil
	if cn.waiters.Len() == 0 {
		g.waiting.Remove(cn.inWaiting)
		cn.inWaiting = nil
	}
}

// unpendLocked takes pending c off its connection's reservations waiting
// for their request.
func (g *Gate) unpendLocked(c *call) {
	cn := c.conn
	cn.pending.Remove(c.elem)
	c.elem = nil
	if cn.pending.Len() == 0 {
		g.holding.Remove(cn.inHolding)
		cn.inHolding = nil
	}
}

// scheduleLocked grants room to waiting calls, the connection holding
// least first, and takes reservations back for them where the rules
// allow, cancelling their calls (which takes no lock of the gate's).
func (g *Gate) scheduleLocked() {
	now := time.Now()
	var retry time.Duration // when a reservation may be taken back, if one may
	for g.waiting.Len() > 0 {
		var next *conn
		for e := g.waiting.Front(); e != nil; e = e.Next() {
			cn := e.Value.(*conn)
			if cn.held+g.per > g.connLimit {
				continue // waits for its own calls
			}
			if next == nil || cn.before(next) {
				next = cn
			}
		}
		if next == nil {
			break
		}
		if g.used+g.per > g.limit {
			if g.used-g.freeing+g.per <= g.limit {
				break // the room comes as calls taken back end
			}
			victim, at := g.victimLocked(next, now)
			if victim == nil {
				retry = at
				break
			}
			g.unpendLocked(victim)
			g.freeing += victim.reserved
			victim.state = takenBack
			victim.conn.strikes++
			victim.cancel(ErrWithdrawn)
			continue
		}
		c := next.waiters.Front().Value.(*call)
		g.unwaitLocked(c)
		g.grantLocked(next, c, now)
	}
	switch {
	case retry > 0 && g.timer == nil:
		g.timer = time.AfterFunc(retry, g.onTimer)
	case retry > 0:
		g.timer.Reset(retry)
	case g.timer != nil:
		g.timer.Stop()
	}
}

// victimLocked returns the reservation to take back for a call of
// connection w: the oldest of the connection that has kept the gate
// waiting longest without delivering a request, among those that hold at
// least one request more than w, if that is g.wait or more. Otherwise it
// returns, if there is such a connection, how long until it will be.
func (g *Gate) victimLocked(w *conn, now time.Time) (*call, time.Duration) {
	var stalled *conn
	for e := g.holding.Front(); e != nil; e = e.Next() {
		cn := e.Value.(*conn)
		if cn.held < w.held+g.per {
			continue
		}
		if stalled == nil || cn.since.Before(stalled.since) {
			stalled = cn
		}
	}
	if stalled == nil {
		return nil, 0
	}
	if waited := now.Sub(stalled.since); waited < g.wait {
		return nil, g.wait - waited
	}
	return stalled.pending.Front().Value.(*call), 0
}

// before reports whether waiting connection cn gets room before o: the
// one holding less, then the one that delivered a request last (so that
// clients that deliver go before streams that never did), then the one
// waiting longest.
func (cn *conn) before(o *conn) bool {
	switch {
	case cn.held != o.held:
		return cn.held < o.held
	case !cn.delivered.Equal(o.delivered):
		return cn.delivered.After(o.delivered)
	}
	return cn.queuedFirst().Before(o.queuedFirst())
}

// queuedFirst is when its oldest waiting call began to wait.
func (cn *conn) queuedFirst() time.Time { return cn.waiters.Front().Value.(*call).queued }

func (g *Gate) onTimer() {
	g.mu.Lock()
	g.scheduleLocked()
	g.mu.Unlock()
}
