// Package nodehook runs a function once per call attempt, knowing which
// node served it: go-micro's CallWrapper, which wrapped each attempt after
// the selector chose a node. It is a grpc-go stats.Handler, because only
// stats handlers see each retry attempt separately, with its peer.
//
//	grpc.WithStatsHandler(nodehook.NewClientHandler(func(ctx context.Context, a nodehook.Attempt) {
//		slog.Info("attempt", "method", a.Method, "node", a.Node, "addr", a.Addr, "err", a.Err)
//	}))
package nodehook

import (
	"context"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/stats"

	"github.com/microgrpc/microgrpc/balancer/randomhash"
)

// Attempt describes one finished attempt of a call.
type Attempt struct {
	Method string
	// Node is the registry node id chosen by the random_hash policy (empty
	// with another policy); Addr is the peer's address.
	Node     string
	Addr     string
	Err      error
	Duration time.Duration
	// TransparentRetry is true for attempts grpc-go retried on its own
	// because the first never left the client.
	TransparentRetry bool
}

// NewClientHandler returns a client stats handler calling hook after every
// attempt. hook runs on the call's goroutine and must not block.
func NewClientHandler(hook func(ctx context.Context, a Attempt)) stats.Handler {
	return &handler{hook: hook}
}

type handler struct {
	hook func(context.Context, Attempt)
}

type attemptKey struct{}

type attempt struct {
	method string
	start  time.Time
	addr   atomic.Value // string
	node   atomic.Value // string
	retry  bool
}

func (h *handler) TagRPC(ctx context.Context, info *stats.RPCTagInfo) context.Context {
	return context.WithValue(ctx, attemptKey{}, &attempt{method: info.FullMethodName, start: time.Now()})
}

func (h *handler) HandleRPC(ctx context.Context, s stats.RPCStats) {
	a, ok := ctx.Value(attemptKey{}).(*attempt)
	if !ok || !s.IsClient() {
		return
	}
	switch st := s.(type) {
	case *stats.Begin:
		a.retry = st.IsTransparentRetryAttempt
	case *stats.OutHeader:
		if st.RemoteAddr != nil {
			a.addr.Store(st.RemoteAddr.String())
		}
		// The pick has happened: the policy knows the node.
		a.node.Store(randomhash.PickedNode(ctx))
	case *stats.End:
		addr, _ := a.addr.Load().(string)
		node, _ := a.node.Load().(string)
		h.hook(ctx, Attempt{Method: a.method, Node: node, Addr: addr, Err: st.Error, Duration: st.EndTime.Sub(a.start), TransparentRetry: a.retry})
	}
}

func (h *handler) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context { return ctx }
func (h *handler) HandleConn(context.Context, stats.ConnStats)                       {}
