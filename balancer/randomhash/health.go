package randomhash

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/balancer"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	grpcresolver "google.golang.org/grpc/resolver"
	"google.golang.org/grpc/status"

	"github.com/microgrpc/microgrpc/internal/backoff"
	"github.com/microgrpc/microgrpc/resolver"
)

// Service health: grpc-go's client-side health check (healthCheckConfig)
// asks every node of a channel for one name, "" (the whole server) in
// DefaultServiceConfig. That passes a node that is some other gRPC server
// (a stale registry record whose port was reused): it answers SERVING for
// "" and Unimplemented for every call. So, with serviceHealthCheck on, the
// policy also watches each microgrpc node's health for the node's service
// name, on the node's own connection, and leaves the node out of picks
// until that answers SERVING. Which name is the record's to say
// (resolver.Node.HealthService, set by micro): nodes registered without
// one (a plain grpc-go server written to etcd by endpoints.Manager) and
// endpoints of other resolvers get only the standard check. A server
// without the health service (Unimplemented) passes, as in grpc-go's own
// check.

// Service health states of a node.
const (
	healthUnknown int32 = iota // no answer yet: the node is left out, calls wait
	healthServing
	healthFailing // answered something other than SERVING: left out
)

// nodeHealth is one node's service health, watched on one SubConn.
type nodeHealth struct {
	id, service string
	sc          balancer.SubConn
	cancel      context.CancelFunc
	state       atomic.Int32
	why         atomic.Pointer[string] // the last failing answer
}

func (h *nodeHealth) err() string {
	if w := h.why.Load(); w != nil {
		return *w
	}
	return "no answer yet"
}

// healthWatchBackoff is the wait before a failed watch stream is opened
// again while the connection is READY.
var healthWatchBackoff = backoff.Policy{Min: 100 * time.Millisecond, Max: 5 * time.Second}

// serviceHealthFor returns the node id and the service name to watch for
// a SubConn of addrs, or "" when the node gets only the standard check.
func serviceHealthFor(addrs []grpcresolver.Address) (id, service string) {
	if len(addrs) == 0 {
		return "", ""
	}
	h, ok := resolver.HealthCheckFromAddress(addrs[0])
	if !ok {
		// Another resolver's endpoint: known by its address (nodeID).
		return addrs[0].Addr, ""
	}
	return h.NodeID, h.Service
}

// NewSubConn passes the SubConn through and follows its connectivity: the
// balancer keeps each node's READY SubConn (to probe a node suspended for
// missing deadlines, see probe.go), and, for a node whose service health
// is checked, READY starts the watch and anything else stops it.
func (c interceptCC) NewSubConn(addrs []grpcresolver.Address, opts balancer.NewSubConnOptions) (balancer.SubConn, error) {
	id, service := serviceHealthFor(addrs)
	watch := service != "" && c.b.cfg.Load().serviceHealth
	var sc balancer.SubConn
	listener := opts.StateListener
	opts.StateListener = func(s balancer.SubConnState) {
		if s.ConnectivityState == connectivity.Ready {
			c.b.setReadySubConn(id, service, sc)
			if watch {
				c.b.watchServiceHealth(id, service, sc)
			}
		} else {
			c.b.clearReadySubConn(id, sc)
			if watch {
				c.b.stopServiceHealth(id, sc)
			}
		}
		if listener != nil {
			listener(s)
		}
	}
	var err error
	//lint:ignore SA1019 a policy that wraps its children sees their SubConns only here; pickfirst passes one address.
	sc, err = c.ClientConn.NewSubConn(addrs, opts)
	return sc, err
}

// watchServiceHealth starts watching node id's health for service on sc,
// replacing a watch of an earlier SubConn of the node.
func (b *rhBalancer) watchServiceHealth(id, service string, sc balancer.SubConn) {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return
	}
	if old := b.health[id]; old != nil {
		if old.sc == sc {
			b.mu.Unlock()
			return
		}
		old.cancel()
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &nodeHealth{id: id, service: service, sc: sc, cancel: cancel}
	b.health[id] = h
	b.wg.Add(1)
	b.mu.Unlock()
	go func() {
		defer b.wg.Done()
		b.runServiceHealth(ctx, h)
	}()
}

// stopServiceHealth ends the watch of node id on sc, if that is the one.
// The node is left out until a new watch says SERVING; it is not READY now
// anyway.
func (b *rhBalancer) stopServiceHealth(id string, sc balancer.SubConn) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if h := b.health[id]; h != nil && h.sc == sc {
		h.cancel()
		delete(b.health, id)
	}
}

// healthFor returns node id's service health, or nil when it has none
// (not checked, or not connected).
func (b *rhBalancer) healthFor(id string) *nodeHealth {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.health[id]
}

// runServiceHealth watches until ctx ends, republishing the picker when
// the node's state changes.
func (b *rhBalancer) runServiceHealth(ctx context.Context, h *nodeHealth) {
	p, closeProducer := h.sc.GetOrBuildProducer(healthProducerBuilder{})
	defer closeProducer()
	client := healthpb.NewHealthClient(p.(*healthProducer).cc)
	set := func(st int32, why string) {
		if why != "" {
			h.why.Store(&why)
		}
		if h.state.Swap(st) != st {
			b.republish()
		}
	}
	attempt := 0
	for ctx.Err() == nil {
		received := b.watchOnce(ctx, client, h, set)
		if ctx.Err() != nil || received == errDone {
			return
		}
		if received == nil {
			attempt = 0 // it answered: no need to wait long
		}
		if !backoff.Sleep(ctx, healthWatchBackoff.Delay(attempt), nil) {
			return
		}
		attempt++
	}
}

// errDone ends a watch for good: the server has no health service.
var errDone = errors.New("randomhash: service health watch done")

// watchOnce runs one Watch stream. It returns nil when the stream
// delivered at least one answer before it ended, errDone when there is
// nothing to watch, and the stream's error otherwise.
func (b *rhBalancer) watchOnce(ctx context.Context, client healthpb.HealthClient, h *nodeHealth, set func(int32, string)) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := client.Watch(ctx, &healthpb.HealthCheckRequest{Service: h.service})
	var answered bool
	for err == nil {
		var rsp *healthpb.HealthCheckResponse
		if rsp, err = stream.Recv(); err == nil {
			answered = true
			if rsp.GetStatus() == healthpb.HealthCheckResponse_SERVING {
				set(healthServing, "")
			} else {
				set(healthFailing, fmt.Sprintf("answers health status %s for service %q", rsp.GetStatus(), h.service))
			}
		}
	}
	if status.Code(err) == codes.Unimplemented {
		// No health service at all: nothing tells us otherwise, as in
		// grpc-go's own check.
		set(healthServing, "")
		return errDone
	}
	if answered {
		return nil
	}
	return err
}

// healthProducerBuilder gives the watch a grpc.ClientConnInterface whose
// streams run on one SubConn, the way grpc-go's health and ORCA producers
// reach a particular backend.
type healthProducerBuilder struct{}

type healthProducer struct{ cc grpc.ClientConnInterface }

func (healthProducerBuilder) Build(cci any) (balancer.Producer, func()) {
	return &healthProducer{cc: cci.(grpc.ClientConnInterface)}, func() {}
}

// stopAllServiceHealth ends every watch and waits for them: after it no
// goroutine of the balancer touches a SubConn or the ClientConn.
func (b *rhBalancer) stopAllServiceHealth() {
	b.mu.Lock()
	b.closed = true
	for id, h := range b.health {
		h.cancel()
		delete(b.health, id)
	}
	b.mu.Unlock()
	b.wg.Wait()
}

// publisher keeps the last state endpointsharding reported, so that a
// change of service health can publish a new picker from it.
type publisher struct {
	mu   sync.Mutex
	last balancer.State
	set  bool
}
