// Package reqmem bounds the memory a gRPC server holds for requests in
// flight: a grpc-go stats handler that admits a unary or server-streaming
// call's request only while the bytes reserved by the others leave room.
//
// grpc-go reads a request whole before the handler runs, and offers no
// hook once the request's length is known; it does run the stats handler's
// Begin on the call's own goroutine before it asks the client for the
// request. So Begin waits there for a reservation of the largest request
// the server accepts, within the call's context; while it waits the
// client can send no more than the stream's initial flow-control window
// (the server must fix it with grpc.InitialWindowSize, which also turns
// off grpc-go's growing of windows). Once the request arrived (InPayload)
// the reservation shrinks to its size, held until the call ends, since the
// handler holds the decoded request.
//
// Client-streaming and bidirectional calls are not gated: they read one
// message at a time, each bounded by the maximum message size.
package reqmem

import (
	"container/list"
	"context"
	"sync"

	"google.golang.org/grpc/stats"
)

// Gate is the stats handler; the zero value is not usable, make one with
// New.
type Gate struct {
	per int64 // reserved for a request not received yet

	mu      sync.Mutex
	limit   int64
	used    int64
	waiters list.List // of *waiter, oldest first
}

type waiter struct {
	n     int64
	ready chan struct{}
}

// New returns a gate of limit bytes that reserves perRequest (the largest
// request the server accepts) for each request until it has arrived.
func New(limit, perRequest int64) *Gate {
	return &Gate{limit: limit, per: min(perRequest, limit)}
}

// Used reports the bytes reserved now.
func (g *Gate) Used() int64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.used
}

type callKey struct{}

// call is one call's reservation; only its own goroutine changes it. It
// is the context TagRPC returns, so that a call costs one allocation.
type call struct {
	context.Context
	reserved int64
}

func (c *call) Value(key any) any {
	if key == (callKey{}) {
		return c
	}
	return c.Context.Value(key)
}

func (g *Gate) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context {
	return &call{Context: ctx}
}

// callOf returns the call of ctx, nil for a context TagRPC did not make.
func callOf(ctx context.Context) *call {
	c, _ := ctx.Value(callKey{}).(*call)
	return c
}

// HandleRPC looks at the three events it needs, and looks the call up
// only for them: grpc-go sends every event of every call.
func (g *Gate) HandleRPC(ctx context.Context, s stats.RPCStats) {
	switch s := s.(type) {
	case *stats.Begin:
		if s.IsClientStream || s.Client {
			return
		}
		if c := callOf(ctx); c != nil && g.acquire(ctx, g.per) {
			c.reserved = g.per
		}
	case *stats.InPayload:
		c := callOf(ctx)
		if s.Client || c == nil || c.reserved == 0 {
			return
		}
		switch keep := int64(s.Length); {
		case keep < c.reserved:
			g.release(c.reserved - keep)
			c.reserved = keep
		case keep > c.reserved:
			// Larger than reserved for (the server accepts more than it
			// told the gate): it is here already; count it.
			g.mu.Lock()
			g.used += keep - c.reserved
			g.mu.Unlock()
			c.reserved = keep
		}
	case *stats.End:
		if c := callOf(ctx); c != nil && c.reserved > 0 {
			g.release(c.reserved)
			c.reserved = 0
		}
	}
}

func (g *Gate) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context { return ctx }

func (g *Gate) HandleConn(context.Context, stats.ConnStats) {}

// acquire reserves n bytes, waiting in turn; false when ctx ended first,
// and then the call goes on unreserved to fail on its ended context.
func (g *Gate) acquire(ctx context.Context, n int64) bool {
	g.mu.Lock()
	if g.waiters.Len() == 0 && g.used+n <= g.limit {
		g.used += n
		g.mu.Unlock()
		return true
	}
	w := &waiter{n: n, ready: make(chan struct{})}
	e := g.waiters.PushBack(w)
	g.mu.Unlock()
	select {
	case <-w.ready:
		return true
	case <-ctx.Done():
		g.mu.Lock()
		select {
		case <-w.ready:
			// Granted meanwhile: give it back.
			g.used -= n
		default:
			g.waiters.Remove(e)
		}
		g.grantLocked()
		g.mu.Unlock()
		return false
	}
}

func (g *Gate) release(n int64) {
	g.mu.Lock()
	g.used -= n
	g.grantLocked()
	g.mu.Unlock()
}

// grantLocked admits waiters in order while they fit.
func (g *Gate) grantLocked() {
	for e := g.waiters.Front(); e != nil; e = g.waiters.Front() {
		w := e.Value.(*waiter)
		if g.used+w.n > g.limit {
			return
		}
		g.used += w.n
		g.waiters.Remove(e)
		close(w.ready)
	}
}
