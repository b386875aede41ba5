package gateway

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/microgrpc/microgrpc/internal/backoff"
	"github.com/microgrpc/microgrpc/resolver"
)

// watchBackoff paces the registry watch and the health watches after a
// failure.
var watchBackoff = backoff.Policy{Min: 100 * time.Millisecond, Max: 5 * time.Second}

// Node is one node as the dashboard shows it.
type Node struct {
	ID       string            `json:"id"`
	Address  string            `json:"address"`
	Version  string            `json:"version"`
	Metadata map[string]string `json:"metadata"`
	// Health is what the node's health service last said (SERVING,
	// NOT_SERVING, SERVICE_UNKNOWN), or UNIMPLEMENTED, UNREACHABLE,
	// CHECKING; nothing for a topic's subscriber.
	Health string `json:"health,omitempty"`

	healthService string
}

// ServiceNodes is a service and its nodes, by id.
type ServiceNodes struct {
	Name  string `json:"name"`
	Nodes []Node `json:"nodes"`
}

// Topic is a pub/sub topic and the nodes subscribed to it.
type Topic struct {
	Topic       string `json:"topic"`
	Subscribers []Node `json:"subscribers"`
}

// Snapshot is the registry as the gateway sees it.
type Snapshot struct {
	Registry string         `json:"registry"`
	Services []ServiceNodes `json:"services"`
	Topics   []Topic        `json:"topics"`
}

// brokerPrefix names the registry services through which the http broker
// announces a topic's subscribers.
const brokerPrefix = "micro.broker."

// topicOf returns the topic whose subscribers a registry service lists, if
// it is one. Subscriptions are announced as services micro.broker.<topic>
// today; this is the one place that knows it.
func topicOf(service string) (string, bool) {
	return strings.CutPrefix(service, brokerPrefix)
}

// state follows the registry (every service, every node) and each node's
// health, for the dashboard, for naming the node that served a call, and
// for answering 404 without asking the registry.
type state struct {
	g *Gateway

	// refreshMu makes refreshes one at a time, so that an older read of
	// the registry is never applied after a newer one.
	refreshMu sync.Mutex
	missed    map[string]time.Time // service -> last refresh for an unknown peer

	mu       sync.Mutex
	stopped  bool                        // no health watch starts after run returns
	services map[string]map[string]*Node // service -> node id -> node
	health   map[string]context.CancelFunc
	changed  map[chan struct{}]struct{} // the dashboard's event streams
	wg       sync.WaitGroup             // the health watches
}

func newState(g *Gateway) *state {
	return &state{g: g, services: map[string]map[string]*Node{}, health: map[string]context.CancelFunc{}, changed: map[chan struct{}]struct{}{}, missed: map[string]time.Time{}}
}

// run follows the registry until ctx ends: watch, then list, then apply
// each event; after an error, again after a backoff.
func (s *state) run(ctx context.Context) {
	defer func() {
		s.mu.Lock()
		s.stopped = true
		s.mu.Unlock()
		s.wg.Wait()
	}()
	for attempt := 0; ; attempt++ {
		if err := s.follow(ctx); ctx.Err() != nil {
			return
		} else if err != nil {
			s.g.opts.logger.Warn("gateway: registry watch failed; watching again", "registry", s.g.reg.String(), "error", err)
		}
		if !backoff.Sleep(ctx, watchBackoff.Delay(attempt), nil) {
			return
		}
	}
}

func (s *state) follow(ctx context.Context) error {
	w, err := s.g.reg.Watch(ctx)
	if err != nil {
		return err
	}
	defer w.Stop()
	list, err := s.g.reg.ListServices(ctx)
	if err != nil {
		return err
	}
	names := map[string]bool{}
	for _, svc := range list {
		names[svc.Name] = true
	}
	s.mu.Lock()
	for name := range s.services {
		names[name] = true // gone while nobody watched: refresh drops it
	}
	s.mu.Unlock()
	for name := range names {
		s.refresh(ctx, name)
	}
	for {
		ev, err := w.Next()
		if err != nil {
			return err
		}
		if ev.Action == resolver.Create {
			s.g.forget(ev.Service.Name)
		}
		s.refresh(ctx, ev.Service.Name)
	}
}

// refresh reads a service's nodes again (within ctx), and starts and
// stops their health watches (which live until the gateway closes or the
// node goes).
func (s *state) refresh(ctx context.Context, name string) {
	s.refreshMu.Lock()
	defer s.refreshMu.Unlock()
	svcs, err := s.g.reg.GetService(ctx, name)
	if err != nil && !errors.Is(err, resolver.ErrNotFound) {
		s.g.opts.logger.Warn("gateway: registry: get service", "service", name, "error", err)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return
	}
	old := s.services[name]
	nodes := map[string]*Node{}
	for _, svc := range svcs {
		for _, n := range svc.Nodes {
			node := &Node{ID: n.ID, Address: n.Address, Version: svc.Version, Metadata: maps.Clone(n.Metadata), Health: "CHECKING", healthService: n.HealthService}
			if node.Metadata == nil {
				node.Metadata = map[string]string{}
			}
			key := name + "/" + n.ID
			if _, topic := topicOf(name); topic {
				// A subscription's record names the broker's endpoint,
				// not a gRPC server with a health service.
				node.Health = ""
			} else if o, ok := old[n.ID]; ok && o.Address == n.Address && o.healthService == n.HealthService {
				node.Health = o.Health
			} else {
				if cancel, ok := s.health[key]; ok {
					cancel()
				}
				hctx, cancel := context.WithCancel(s.g.ctx)
				s.health[key] = cancel
				s.wg.Go(func() { s.watchHealth(hctx, name, n.ID, n.Address, n.HealthService) })
			}
			nodes[n.ID] = node
		}
	}
	for id := range old {
		if _, ok := nodes[id]; !ok {
			if cancel, ok := s.health[name+"/"+id]; ok {
				cancel()
				delete(s.health, name+"/"+id)
			}
		}
	}
	if len(nodes) == 0 {
		delete(s.services, name)
	} else {
		s.services[name] = nodes
	}
	s.notifyLocked()
}

// watchHealth follows one node's health until ctx ends.
func (s *state) watchHealth(ctx context.Context, service, id, addr, healthService string) {
	cc, err := grpc.NewClient("passthrough:///"+addr, s.g.opts.nodeDialOpts...)
	if err != nil {
		s.setHealth(service, id, addr, "UNREACHABLE")
		return
	}
	defer cc.Close()
	client := healthpb.NewHealthClient(cc)
	for attempt := 0; ctx.Err() == nil; attempt++ {
		stream, err := client.Watch(ctx, &healthpb.HealthCheckRequest{Service: healthService})
		for err == nil {
			var rsp *healthpb.HealthCheckResponse
			if rsp, err = stream.Recv(); err == nil {
				attempt = 0
				s.setHealth(service, id, addr, rsp.GetStatus().String())
			}
		}
		if ctx.Err() != nil {
			return
		}
		health := "UNREACHABLE"
		if status.Code(err) == codes.Unimplemented {
			health = "UNIMPLEMENTED"
		}
		s.setHealth(service, id, addr, health)
		if !backoff.Sleep(ctx, watchBackoff.Delay(attempt), nil) {
			return
		}
	}
}

func (s *state) setHealth(service, id, addr, health string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n := s.services[service][id]; n != nil && n.Address == addr && n.Health != health {
		n.Health = health
		s.notifyLocked()
	}
}

// notifyLocked wakes the event streams. Caller must hold s.mu.
func (s *state) notifyLocked() {
	for c := range s.changed {
		select {
		case c <- struct{}{}:
		default:
		}
	}
}

// subscribe returns a channel that yields after each change, and its
// cancel.
func (s *state) subscribe() (<-chan struct{}, func()) {
	c := make(chan struct{}, 1)
	s.mu.Lock()
	s.changed[c] = struct{}{}
	s.mu.Unlock()
	return c, func() {
		s.mu.Lock()
		delete(s.changed, c)
		s.mu.Unlock()
	}
}

// known reports whether the registry has nodes of name.
func (s *state) known(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.services[name]) > 0
}

// nodeAt returns the id of the node of service at addr, or "". A call
// may reach a node before the registry watch told the gateway of it (the
// call's resolver reads the registry on its own): then the service is read
// again, at most once a second, so that a peer the registry does not name
// (a node registered by host name) costs no read per call.
func (s *state) nodeAt(ctx context.Context, service, addr string) string {
	if id := s.lookup(service, addr); id != "" {
		return id
	}
	s.mu.Lock()
	recent := time.Since(s.missed[service]) < time.Second
	if !recent {
		s.missed[service] = time.Now()
	}
	s.mu.Unlock()
	if recent {
		return ""
	}
	s.refresh(ctx, service)
	return s.lookup(service, addr)
}

func (s *state) lookup(service, addr string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, n := range s.services[service] {
		if n.Address == addr {
			return n.ID
		}
	}
	return ""
}

// snapshot copies the state, sorted.
func (s *state) snapshot() Snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	snap := Snapshot{Registry: s.g.reg.String(), Services: []ServiceNodes{}, Topics: []Topic{}}
	for _, name := range slices.Sorted(maps.Keys(s.services)) {
		var nodes []Node
		for _, id := range slices.Sorted(maps.Keys(s.services[name])) {
			n := *s.services[name][id]
			n.Metadata = maps.Clone(n.Metadata)
			nodes = append(nodes, n)
		}
		if topic, ok := topicOf(name); ok {
			snap.Topics = append(snap.Topics, Topic{Topic: topic, Subscribers: nodes})
			continue
		}
		snap.Services = append(snap.Services, ServiceNodes{Name: name, Nodes: nodes})
	}
	return snap
}
