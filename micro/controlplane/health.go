package controlplane

import (
	"context"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/microgrpc/microgrpc/resolver"
)

// A check waits for its answer at least minCheckTimeout (and at least the
// interval); checkErrorsToFail checks in a row without an answer mark a
// node UNHEALTHY.
const (
	minCheckTimeout   = time.Second
	checkErrorsToFail = 2
)

// healthChecks asks the nodes of one service for their health (see
// WithHealthCheck).
type healthChecks struct {
	cp      *ControlPlane
	service string
	changed chan struct{} // buffer 1: a node's health changed

	mu    sync.Mutex
	nodes map[string]*nodeCheck // by node id
}

// nodeCheck is the check of one node.
type nodeCheck struct {
	address, name string
	cancel        context.CancelFunc
	failing       bool // guarded by healthChecks.mu
}

func newHealthChecks(cp *ControlPlane, service string) *healthChecks {
	return &healthChecks{cp: cp, service: service, changed: make(chan struct{}, 1), nodes: map[string]*nodeCheck{}}
}

// unhealthy reports whether the node failed its last check. A node not
// checked yet counts as healthy: registered means in the assignment.
func (h *healthChecks) unhealthy(id string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := h.nodes[id]
	return n != nil && n.failing
}

// sync checks the given nodes, and stops checking the others.
func (h *healthChecks) sync(nodes []resolver.Node) {
	h.mu.Lock()
	defer h.mu.Unlock()
	keep := map[string]bool{}
	for _, n := range nodes {
		keep[n.ID] = true
		if c := h.nodes[n.ID]; c != nil {
			if c.address == n.Address && c.name == n.HealthService {
				continue
			}
			c.cancel()
		}
		ctx, cancel := context.WithCancel(h.cp.ctx)
		c := &nodeCheck{address: n.Address, name: n.HealthService, cancel: cancel}
		h.nodes[n.ID] = c
		if !h.cp.goLive(func() { h.check(ctx, n.ID, c) }) {
			cancel()
			delete(h.nodes, n.ID)
		}
	}
	for id, c := range h.nodes {
		if !keep[id] {
			c.cancel()
			delete(h.nodes, id)
		}
	}
}

// stop ends every check.
func (h *healthChecks) stop() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for id, c := range h.nodes {
		c.cancel()
		delete(h.nodes, id)
	}
}

// check asks one node for its health every interval, until ctx ends. The
// name asked is the node's health service (micro sets the service's own
// name); a record without one is asked about the whole server (""), as
// balancer/randomhash does.
func (h *healthChecks) check(ctx context.Context, id string, c *nodeCheck) {
	opts := h.cp.opts.healthDial
	if len(opts) == 0 {
		opts = []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	}
	conn, err := grpc.NewClient(c.address, opts...)
	if err != nil {
		h.set(id, c, true, err.Error())
		return
	}
	defer conn.Close()
	client := healthpb.NewHealthClient(conn)
	every := h.cp.opts.healthEvery
	timer := time.NewTimer(0)
	defer timer.Stop()
	errorsInARow := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		cctx, cancel := context.WithTimeout(ctx, max(every, minCheckTimeout))
		rsp, err := client.Check(cctx, &healthpb.HealthCheckRequest{Service: c.name})
		cancel()
		if ctx.Err() != nil {
			return
		}
		// An answer other than SERVING counts at once; a check that got no
		// answer (a slow or busy node, a lost packet) only when it happens
		// again, so that one hiccup does not empty a busy service.
		switch {
		case err != nil:
			if errorsInARow++; errorsInARow >= checkErrorsToFail {
				h.set(id, c, true, err.Error())
			}
		case rsp.GetStatus() != healthpb.HealthCheckResponse_SERVING:
			errorsInARow = 0
			h.set(id, c, true, rsp.GetStatus().String())
		default:
			errorsInARow = 0
			h.set(id, c, false, "")
		}
		timer.Reset(every)
	}
}

// set records a check's outcome and, when it changed, has the service
// published again.
func (h *healthChecks) set(id string, c *nodeCheck, failing bool, why string) {
	h.mu.Lock()
	if h.nodes[id] != c || c.failing == failing {
		h.mu.Unlock()
		return
	}
	c.failing = failing
	h.mu.Unlock()
	if failing {
		h.cp.opts.logger.Warn("microgrpc: control plane marks a node UNHEALTHY", "service", h.service, "node", id, "address", c.address, "health_service", c.name, "reason", why)
	} else {
		h.cp.opts.logger.Info("microgrpc: control plane marks a node HEALTHY again", "service", h.service, "node", id)
	}
	select {
	case h.changed <- struct{}{}:
	default:
	}
}
