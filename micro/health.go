package micro

import (
	"context"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// healthServer is grpc-go's health server plus one thing a graceful stop
// needs: ending the Watch streams. Load balancers and orchestrators hold a
// Watch open for as long as the server lives, and GracefulStop waits for
// every stream, so without this each stop would wait out its whole grace
// period. Once the watchers have been told NOT_SERVING and the node is
// deregistered, endWatches ends their streams with Unavailable.
type healthServer struct {
	*health.Server

	mu      sync.Mutex
	ended   bool
	watches map[*context.CancelFunc]struct{}
}

var _ healthpb.HealthServer = (*healthServer)(nil)

func newHealthServer() *healthServer {
	return &healthServer{Server: health.NewServer(), watches: map[*context.CancelFunc]struct{}{}}
}

// errShuttingDown ends health watches during a graceful stop.
var errShuttingDown = status.Error(codes.Unavailable, "micro: service is shutting down")

// Watch is health.Server's, on a stream that endWatches can end.
func (h *healthServer) Watch(req *healthpb.HealthCheckRequest, stream healthpb.Health_WatchServer) error {
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	h.mu.Lock()
	if h.ended {
		h.mu.Unlock()
		return errShuttingDown
	}
	h.watches[&cancel] = struct{}{}
	h.mu.Unlock()
	defer func() {
		h.mu.Lock()
		delete(h.watches, &cancel)
		h.mu.Unlock()
	}()
	err := h.Server.Watch(req, &watchStream{Health_WatchServer: stream, ctx: ctx})
	if ctx.Err() != nil && stream.Context().Err() == nil {
		return errShuttingDown // ended by endWatches, not by the client
	}
	return err
}

// endWatches ends every Watch stream, and refuses new ones.
func (h *healthServer) endWatches() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ended = true
	for cancel := range h.watches {
		(*cancel)()
	}
}

// watchStream is a Watch stream with a context endWatches can cancel.
type watchStream struct {
	healthpb.Health_WatchServer
	ctx context.Context
}

func (w *watchStream) Context() context.Context { return w.ctx }
