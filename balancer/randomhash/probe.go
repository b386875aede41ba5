package randomhash

import (
	"context"
	"time"

	"google.golang.org/grpc/balancer"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/microgrpc/microgrpc/internal/backoff"
)

// A node ejected for missing deadlines (frozen: a long pause, SIGSTOP,
// packets dropped) is suspended: its cool-down ending does not bring it
// back, since the first calls to reach it would all hang until their
// deadlines, every caller with them. Instead a prober asks the node, on
// its own connection, for a health check with a short timeout, once per
// cool-down; the first answer (any answer: the process runs again) lifts
// the suspension. A node that is only slow answers the probe at once and
// is back after one cool-down.

// readyConn is a node's READY SubConn and the health service name to
// probe it with.
type readyConn struct {
	sc      balancer.SubConn
	service string
}

// probeTimeout bounds one probe: a node that runs answers a health check
// in well under it.
const probeTimeout = time.Second

// probeNode asks sc for its health; nil means the node answered. Tests
// replace it.
var probeNode = func(ctx context.Context, sc balancer.SubConn, service string) error {
	p, closeProducer := sc.GetOrBuildProducer(healthProducerBuilder{})
	defer closeProducer()
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	_, err := healthpb.NewHealthClient(p.(*healthProducer).cc).Check(ctx, &healthpb.HealthCheckRequest{Service: service})
	switch status.Code(err) {
	case codes.OK, codes.NotFound, codes.Unimplemented:
		// It answered; whether it serves the service is the service
		// health check's business.
		return nil
	}
	return err
}

func (b *rhBalancer) setReadySubConn(id, service string, sc balancer.SubConn) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.ready[id] = readyConn{sc: sc, service: service}
}

func (b *rhBalancer) clearReadySubConn(id string, sc balancer.SubConn) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ready[id].sc == sc {
		delete(b.ready, id)
	}
}

// suspend starts probing o (node id) unless a prober runs already.
func (b *rhBalancer) suspend(id string, o *outlier) {
	if !o.suspended.CompareAndSwap(false, true) {
		return
	}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return
	}
	b.wg.Add(1)
	b.mu.Unlock()
	go func() {
		defer b.wg.Done()
		b.probe(id, o)
	}()
}

// probe asks node id for its health once per cool-down until it answers,
// the node leaves the resolver state, or the balancer closes.
func (b *rhBalancer) probe(id string, o *outlier) {
	for {
		cfg := b.cfg.Load()
		wait := cfg.base
		for i := uint32(1); i < o.ejections.Load() && wait < cfg.max; i++ {
			wait *= 2
		}
		if !backoff.Sleep(b.ctx, min(wait, cfg.max), nil) {
			return
		}
		if o.state.Load()&stRemoved != 0 {
			return
		}
		b.mu.Lock()
		rc, ok := b.ready[id]
		b.mu.Unlock()
		if !ok {
			continue // not connected: no calls go there anyway
		}
		if probeNode(b.ctx, rc.sc, rc.service) == nil {
			o.consecutive.Store(0)
			o.suspended.Store(false)
			b.askAdjust() // subsetting: the node can take calls again
			return
		}
	}
}
