// Package mdns is microgrpc's default registry: zero-configuration
// discovery on one host or LAN with multicast DNS (DNS-SD), built on
// github.com/grandcat/zeroconf v1.0.0.
//
// Every node is announced as an instance of the DNS-SD type
// "_microgrpc._tcp"; its service name, id, address to dial, version,
// metadata, liveness TTL and endpoints travel in TXT strings (see
// internal/txt: values over 255 bytes are split and reassembled; when the
// record would exceed 1300 bytes, endpoints are dropped first and a warning
// is logged, and registration still works).
//
// # What zeroconf does, and what this package adds
//
// zeroconf answers queries for our instances (we use RegisterProxy with the
// advertised address, since Register refuses interfaces that have only
// loopback addresses), announces them, and sends goodbye packets (TTL 0)
// on Shutdown. Its Browse reports each instance once and never a removal
// (it drops goodbyes internally), and its records carry a 3,200 s TTL unless
// Server.TTL is set, which in v1.0.0 races with its own goroutines.
//
// So the browser here keeps its own cache: it listens to every mDNS
// response on the chosen interfaces itself (github.com/miekg/dns), which
// gives it new nodes as they announce (well under a second), updates, and
// goodbyes, which remove a node at once; it re-queries every
// QueryInterval, and expires a node that has not answered within its own
// TTL (the service's RegisterTTL, carried in TXT, kept at most at MaxTTL;
// the records' DNS TTL is not used), so a node that dies without a goodbye
// disappears within its TTL. A zeroconf Browse runs alongside as a second source of sightings;
// it reports them later than the socket, so its sightings of an instance
// that said goodbye moments ago are ignored rather than bringing the node
// back for its TTL. Watch reports create, update and delete events from
// that cache.
//
// The cache keys nodes by service and node id, as the resolver does, not
// by DNS-SD instance name. When several instances claim one node (a stale
// or spoofed announcement), the one seen first is reported while it
// answers, and another takes over (an update) only once it has said
// goodbye or expired; so a claim that expires never deletes a node that
// still answers. An instance that said goodbye while it was reported, and
// answers again, takes its node back at once (an update): a goodbye
// spoofed next to an impostor's claim hands the node over only until the
// live node's next answer, and the impostor's claim lasts at most MaxTTL.
// See the README on what this defends against and what not.
//
// Changed node data is announced by a new zeroconf server (its SetText
// races too) under a new instance name, and the old one says goodbye only
// once the new one has announced itself (RetireDelay later): browsers then
// see a second instance claim the node and take over from the old one when
// it leaves, which they report as one update, never as the node going away.
//
// # Interfaces
//
// By default every up, multicast-capable interface is used; choose with
// WithInterfaces or $MICRO_MDNS_INTERFACES. When the multicast group cannot
// be joined (typical in containers) NewRegistry fails saying so and
// suggesting etcd.
//
// # Scheme for plain grpc-go programs
//
// Importing this package registers the gRPC scheme "mdns":
// grpc.NewClient("mdns:///greeter", ...) resolves through a process-wide
// registry made on first use and closed with the last ClientConn.
package mdns

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/grandcat/zeroconf"

	"github.com/microgrpc/microgrpc/resolver"
	"github.com/microgrpc/microgrpc/resolver/mdns/internal/txt"
)

// Name is the registry's name.
const Name = "mdns"

// ErrClosed is returned once the registry is closed.
var ErrClosed = errors.New("mdns registry: closed")

// ErrMulticast wraps failures to use multicast on the chosen interfaces.
var ErrMulticast = errors.New("mdns registry: multicast unavailable")

// Registry is the mDNS resolver.Registry. Close it when done.
type Registry struct {
	opts   options
	ifaces []net.Interface

	mu      sync.Mutex
	closed  bool
	servers map[string]*announced // by service + "/" + node id
	browser *browser
}

type announced struct {
	server *responder
	txt    []string
	gen    int // of the instance name; bumped on every change of data
	// retiring are the node's earlier announcements, still answering until
	// their timer says goodbye for them.
	retiring map[*responder]*time.Timer
}

// responder is a zeroconf server and when it was started.
type responder struct {
	*zeroconf.Server
	born time.Time
}

// minResponderAge is how long a responder lives at least. zeroconf v1.0.0
// starts a server's receive goroutines after RegisterProxy returns, and
// they add themselves to the WaitGroup its Shutdown waits on: a Shutdown
// that comes first returns without them (and the race detector reports
// the WaitGroup's misuse). A responder that is stopped younger (a node
// deregistered right after it registered) is given the rest of this time
// to start them.
const minResponderAge = 100 * time.Millisecond

// shutdown sends the goodbyes of rs and stops them.
func shutdown(rs ...*responder) {
	var youngest time.Time
	for _, r := range rs {
		if r.born.After(youngest) {
			youngest = r.born
		}
	}
	if d := time.Until(youngest.Add(minResponderAge)); d > 0 {
		time.Sleep(d)
	}
	for _, r := range rs {
		r.Shutdown()
	}
}

// RetireDelay is how long the announcement of a node's old data keeps
// answering after its new data is announced. zeroconf sends a new
// instance's first two announcements within 1.5 s (after two probes of up
// to 250 ms each, then one second apart); a browser that has seen the new
// instance when the old one says goodbye reports an update, one that has
// not a delete and a create.
const RetireDelay = 2 * time.Second

var _ resolver.Registry = (*Registry)(nil)

// NewRegistry checks that multicast works on the chosen interfaces and
// returns a registry.
func NewRegistry(opts ...Option) (*Registry, error) {
	o := defaultOptions()
	for _, opt := range opts {
		opt(&o)
	}
	ifaces, err := o.interfaces()
	if err != nil {
		return nil, fmt.Errorf("mdns registry: interfaces %v: %w", o.ifaceNames, err)
	}
	if len(ifaces) == 0 {
		return nil, fmt.Errorf("%w: no up, multicast-capable network interface; in a container or across hosts use etcd (MICRO_REGISTRY=etcd)", ErrMulticast)
	}
	// Fail now, with a useful message, if the group cannot be joined.
	c, err := listen(ifaces)
	if err != nil {
		return nil, err
	}
	c.Close()
	return &Registry{opts: o, ifaces: ifaces, servers: map[string]*announced{}}, nil
}

func (r *Registry) String() string { return Name }

// instanceName is the DNS-SD instance label of a node's gen-th
// announcement: readable, at most 63 bytes, unique through a hash of
// service, id and gen (gen 0 hashes as before there were generations).
func instanceName(service, id string, gen int) string {
	key := service + "\x00" + id
	if gen > 0 {
		key += "\x00" + strconv.Itoa(gen)
	}
	sum := sha256.Sum256([]byte(key))
	h := hex.EncodeToString(sum[:6])
	label := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' {
			return r
		}
		return '-'
	}, service+"-"+id)
	if len(label) > 63-len(h)-1 {
		label = label[:63-len(h)-1]
	}
	return label + "-" + h
}

// Register announces each node. Registering a node again with the same
// data does nothing (the responder keeps answering); changed data is
// announced at once, and replaces the old data RetireDelay later.
func (r *Registry) Register(ctx context.Context, s *resolver.Service, opts ...resolver.RegisterOption) error {
	if err := s.Validate(); err != nil {
		return err
	}
	ttl := resolver.NewRegisterOptions(opts...).TTL
	if ttl <= 0 {
		ttl = DefaultTTL
	}
	secs := max(1, int((ttl+time.Second-1)/time.Second))
	for _, n := range s.Nodes {
		if err := r.register(s, n, secs); err != nil {
			return err
		}
	}
	return nil
}

func (r *Registry) register(s *resolver.Service, n resolver.Node, ttl int) error {
	strs, dropped, err := txt.Encode(s, n, ttl)
	if err != nil {
		return err
	}
	host, portStr, err := net.SplitHostPort(n.Address)
	if err != nil {
		return fmt.Errorf("mdns registry: node %q address %q: %w", n.ID, n.Address, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port <= 0 {
		return fmt.Errorf("mdns registry: node %q address %q: bad port", n.ID, n.Address)
	}
	ips := []string{host}
	if net.ParseIP(host) == nil {
		ips = r.interfaceIPs()
	}
	key := s.Name + "/" + n.ID
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return ErrClosed
	}
	old, ok := r.servers[key]
	if ok && slices.Equal(old.txt, strs) {
		return nil
	}
	if dropped > 0 {
		r.opts.logger.Warn("mdns registry: too many endpoints for one TXT record; dropped some (clients do not need them to call)",
			"service", s.Name, "node", n.ID, "dropped", dropped, "kept", len(s.Endpoints)-dropped)
	}
	a := &announced{txt: strs, retiring: map[*responder]*time.Timer{}}
	if ok {
		// Changed data: a new instance, announced next to the old one, so
		// that browsers never see the node gone (a goodbye first would
		// delete it until the new announcement).
		a.gen, a.retiring = old.gen+1, old.retiring
	}
	inst := instanceName(s.Name, n.ID, a.gen)
	srv, err := zeroconf.RegisterProxy(inst, ServiceType, r.opts.domain, port, "mg-"+inst[len(inst)-12:], ips, strs, r.ifaces)
	if err != nil {
		return fmt.Errorf("%w: announce node %q of %q: %v; in a container or across hosts use etcd (MICRO_REGISTRY=etcd)", ErrMulticast, n.ID, s.Name, err)
	}
	a.server = &responder{Server: srv, born: time.Now()}
	if ok {
		prev := old.server
		a.retiring[prev] = time.AfterFunc(RetireDelay, func() { r.retire(a, prev) })
	}
	r.servers[key] = a
	return nil
}

// retire says goodbye for an old announcement of a node, unless Deregister
// or Close did already.
func (r *Registry) retire(a *announced, old *responder) {
	r.mu.Lock()
	_, ok := a.retiring[old]
	delete(a.retiring, old)
	r.mu.Unlock()
	if ok {
		shutdown(old)
	}
}

// shutdownLocked takes every announcement of a out of the timers' hands and
// returns them, to be shut down without r.mu (Shutdown sends packets).
// Caller must hold r.mu.
func (a *announced) shutdownLocked() []*responder {
	out := []*responder{a.server}
	for old, timer := range a.retiring {
		timer.Stop()
		out = append(out, old)
	}
	clear(a.retiring)
	return out
}

func (r *Registry) interfaceIPs() []string {
	var ips []string
	for _, ifc := range r.ifaces {
		addrs, _ := ifc.Addrs()
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil {
				ips = append(ips, ipn.IP.String())
			}
		}
	}
	return ips
}

// Deregister sends goodbye packets for the nodes, which removes them from
// every browser at once.
func (r *Registry) Deregister(ctx context.Context, s *resolver.Service) error {
	if s == nil {
		return fmt.Errorf("%w: nil service", resolver.ErrInvalidService)
	}
	if err := resolver.ValidateName(s.Name); err != nil {
		return err
	}
	r.mu.Lock()
	var stop []*responder
	for _, n := range s.Nodes {
		key := s.Name + "/" + n.ID
		if a, ok := r.servers[key]; ok {
			stop = append(stop, a.shutdownLocked()...)
			delete(r.servers, key)
		}
	}
	r.mu.Unlock()
	shutdown(stop...)
	return nil
}

// ensureBrowser starts the browser on first use.
func (r *Registry) ensureBrowser() (*browser, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, ErrClosed
	}
	if r.browser == nil {
		b, err := startBrowser(r.opts, r.ifaces)
		if err != nil {
			return nil, err
		}
		r.browser = b
	}
	return r.browser, nil
}

// GetService returns the nodes of a service seen on the network. On first
// use it waits for the answers to the browser's first query.
func (r *Registry) GetService(ctx context.Context, name string) ([]*resolver.Service, error) {
	b, err := r.ensureBrowser()
	if err != nil {
		return nil, err
	}
	if err := b.waitReady(ctx); err != nil {
		return nil, err
	}
	nodes := b.service(name)
	if len(nodes) == 0 {
		return nil, fmt.Errorf("%w: %q on mDNS (%s)", resolver.ErrNotFound, name, ifaceNames(r.ifaces))
	}
	return resolver.GroupByVersion(nodes), nil
}

// ListServices lists the services seen, without nodes.
func (r *Registry) ListServices(ctx context.Context) ([]*resolver.Service, error) {
	b, err := r.ensureBrowser()
	if err != nil {
		return nil, err
	}
	if err := b.waitReady(ctx); err != nil {
		return nil, err
	}
	var out []*resolver.Service
	for _, n := range b.serviceNames() {
		out = append(out, &resolver.Service{Name: n})
	}
	return out, nil
}

// Watch reports changes to the nodes seen on the network.
func (r *Registry) Watch(ctx context.Context, opts ...resolver.WatchOption) (resolver.Watcher, error) {
	b, err := r.ensureBrowser()
	if err != nil {
		return nil, err
	}
	return b.watch(ctx, resolver.NewWatchOptions(opts...).Service), nil
}

// Close sends goodbyes for the nodes still registered and stops browsing.
func (r *Registry) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	var stop []*responder
	for _, a := range r.servers {
		stop = append(stop, a.shutdownLocked()...)
	}
	r.servers = nil
	b := r.browser
	r.mu.Unlock()
	shutdown(stop...)
	if b != nil {
		b.close()
	}
	return nil
}

func ifaceNames(ifaces []net.Interface) string {
	var n []string
	for _, i := range ifaces {
		n = append(n, i.Name)
	}
	return "interfaces " + strings.Join(n, ",")
}
