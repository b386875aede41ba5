package mdns

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/grandcat/zeroconf"
	"github.com/miekg/dns"
	"golang.org/x/net/ipv4"

	"github.com/microgrpc/microgrpc/internal/backoff"
	"github.com/microgrpc/microgrpc/resolver"
	"github.com/microgrpc/microgrpc/resolver/internal/eventq"
	"github.com/microgrpc/microgrpc/resolver/mdns/internal/txt"
)

var (
	mdnsGroup = &net.UDPAddr{IP: net.IPv4(224, 0, 0, 251), Port: 5353}
	// Binding the wildcard multicast address makes Go set SO_REUSEADDR and
	// SO_REUSEPORT, so every responder and browser of the host can share
	// port 5353, as zeroconf does.
	mdnsBind = &net.UDPAddr{IP: net.IPv4(224, 0, 0, 0), Port: 5353}
)

// conn is the browser's socket: it joins the mDNS group on every chosen
// interface, receives every response, and sends queries.
type conn struct {
	pc     *ipv4.PacketConn
	udp    *net.UDPConn
	ifaces []net.Interface
}

func listen(ifaces []net.Interface) (*conn, error) {
	udp, err := net.ListenUDP("udp4", mdnsBind)
	if err != nil {
		return nil, fmt.Errorf("%w: listen on udp4 port 5353: %v; in a container or across hosts use etcd (MICRO_REGISTRY=etcd)", ErrMulticast, err)
	}
	pc := ipv4.NewPacketConn(udp)
	var joined []net.Interface
	var lastErr error
	for _, ifc := range ifaces {
		if err := pc.JoinGroup(&ifc, &net.UDPAddr{IP: mdnsGroup.IP}); err != nil {
			lastErr = err
			continue
		}
		joined = append(joined, ifc)
	}
	if len(joined) == 0 {
		udp.Close()
		return nil, fmt.Errorf("%w: cannot join the mDNS multicast group 224.0.0.251 on %s: %v (typical in containers); use etcd instead (MICRO_REGISTRY=etcd)",
			ErrMulticast, ifaceNames(ifaces), lastErr)
	}
	_ = pc.SetControlMessage(ipv4.FlagInterface, true)
	_ = pc.SetMulticastLoopback(true)
	return &conn{pc: pc, udp: udp, ifaces: joined}, nil
}

func (c *conn) Close() error { return c.udp.Close() }

// query asks every node of our type to answer, on every interface.
func (c *conn) query(domain string) error {
	m := new(dns.Msg)
	m.SetQuestion(ServiceType+"."+domain, dns.TypePTR)
	m.RecursionDesired = false
	buf, err := m.Pack()
	if err != nil {
		return err
	}
	var errs []error
	for _, ifc := range c.ifaces {
		if _, err := c.pc.WriteTo(buf, &ipv4.ControlMessage{IfIndex: ifc.Index}, mdnsGroup); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) == len(c.ifaces) {
		return errors.Join(errs...)
	}
	return nil
}

// sighting is what one DNS-SD instance last said about the node it claims.
type sighting struct {
	svc      *resolver.Service // Nodes holds exactly the claimed node
	ttl      time.Duration
	lastSeen time.Time
}

// nodeKey names a node the way the resolver and every other registry do:
// by service and node id. Instance names are only how mDNS finds it.
type nodeKey struct{ service, id string }

// claims holds every instance that claims one node. Only one, current, is
// reported; another takes over only once current is gone, so a second
// instance with the node's id (a stale or spoofed announcement) can neither
// replace a node that still answers nor, when it expires, delete it.
type claims struct {
	current   string               // instance name
	instances map[string]*sighting // by instance name (FQDN)
}

// browser keeps the cache of nodes seen, fed by its socket, re-queries,
// a zeroconf Browse, and expiry.
type browser struct {
	opts     options
	c        *conn
	fqdnType string
	ctx      context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	ready    chan struct{}

	mu        sync.Mutex
	nodes     map[nodeKey]*claims // the cache
	instances map[string]nodeKey  // instance name (FQDN) -> the node it claims
	watchers  eventq.Set          // Notify under mu, for one event order
	// goodbyes holds when instances said goodbye, for lateWindow: the
	// zeroconf Browse reports what it saw later than our socket does, and
	// its report of an instance that has said goodbye since must not bring
	// the node back (for its whole TTL).
	goodbyes map[string]time.Time
	// farewells holds the instances that were their node's reported claim
	// when they said goodbye, for the cap (maxTTL): heard again, such an
	// instance takes its node back from any claim that took over, so that
	// a spoofed goodbye hands a live node to an impostor only until the
	// live node's next answer.
	farewells map[string]farewell
}

// farewell is the node an instance was reported for when it said goodbye,
// and when.
type farewell struct {
	key nodeKey
	at  time.Time
}

// lateWindow is how long after an instance's goodbye the zeroconf Browse's
// sightings of it are taken for late reports of what came before, and
// ignored. Our socket receives the same packets, so a real announcement
// after the goodbye is seen all the same.
const lateWindow = 2 * time.Second

func startBrowser(opts options, ifaces []net.Interface) (*browser, error) {
	c, err := listen(ifaces)
	if err != nil {
		return nil, err
	}
	b := newBrowser(opts, c)
	b.wg.Add(3)
	go b.receive()
	go b.queryLoop()
	go b.zeroconfBrowse()
	return b, nil
}

// newBrowser returns a browser over c with an empty cache, not yet
// started.
func newBrowser(opts options, c *conn) *browser {
	ctx, cancel := context.WithCancel(context.Background())
	return &browser{opts: opts, c: c, fqdnType: ServiceType + "." + opts.domain, ctx: ctx, cancel: cancel,
		ready: make(chan struct{}), nodes: map[nodeKey]*claims{}, instances: map[string]nodeKey{}, goodbyes: map[string]time.Time{},
		farewells: map[string]farewell{}}
}

func (b *browser) close() {
	b.cancel()
	b.c.Close() // unblocks receive
	b.wg.Wait()
	// Also stops watchers that a concurrent watch adds from now on.
	b.watchers.Close()
}

func (b *browser) waitReady(ctx context.Context) error {
	select {
	case <-b.ready:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-b.ctx.Done():
		return ErrClosed
	}
}

func (b *browser) receive() {
	defer b.wg.Done()
	buf := make([]byte, 65536)
	for {
		n, _, _, err := b.c.pc.ReadFrom(buf)
		if err != nil {
			if b.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		var m dns.Msg
		if err := m.Unpack(buf[:n]); err != nil || !m.Response {
			continue // garbage, or a query
		}
		b.handle(&m)
	}
}

// handle applies one response: goodbyes (TTL 0) remove, TXT records add or
// refresh.
func (b *browser) handle(m *dns.Msg) {
	records := append(append(slices.Clone(m.Answer), m.Ns...), m.Extra...)
	now := time.Now()
	for _, rr := range records {
		h := rr.Header()
		switch rec := rr.(type) {
		case *dns.PTR:
			if h.Name == b.fqdnType && h.Ttl == 0 {
				b.remove(rec.Ptr, "goodbye")
			}
		case *dns.SRV:
			if strings.HasSuffix(h.Name, "."+b.fqdnType) && h.Ttl == 0 {
				b.remove(h.Name, "goodbye")
			}
		case *dns.TXT:
			if !strings.HasSuffix(h.Name, "."+b.fqdnType) {
				continue
			}
			if h.Ttl == 0 {
				b.remove(h.Name, "goodbye")
				continue
			}
			b.seen(h.Name, rec.Txt, now)
		}
	}
}

// seen records a sighting of an instance with its TXT data.
func (b *browser) seen(instance string, strs []string, now time.Time) {
	b.seenFrom(instance, strs, now, false)
}

// seenFrom records a sighting; late ones come from the zeroconf Browse.
func (b *browser) seenFrom(instance string, strs []string, now time.Time, late bool) {
	n, err := txt.Decode(strs)
	if err != nil {
		b.opts.logger.Debug("mdns: skipping instance with foreign TXT", "instance", instance, "error", err)
		return
	}
	key := nodeKey{n.Service.Name, n.Service.Nodes[0].ID}
	sg := &sighting{svc: n.Service, ttl: b.ttlOf(n.TTL), lastSeen: now}
	b.mu.Lock()
	defer b.mu.Unlock()
	if bye, ok := b.goodbyes[instance]; ok && late && now.Sub(bye) < lateWindow {
		return
	}
	back := false
	if fw, ok := b.farewells[instance]; ok && !late {
		delete(b.farewells, instance)
		back = fw.key == key
	}
	if was, ok := b.instances[instance]; ok && was != key {
		b.dropLocked(instance, "now claims another node")
	}
	b.instances[instance] = key
	c := b.nodes[key]
	if c == nil {
		b.nodes[key] = &claims{current: instance, instances: map[string]*sighting{instance: sg}}
		b.notifyLocked(resolver.Create, sg.svc)
		return
	}
	old := c.instances[instance]
	c.instances[instance] = sg
	if instance != c.current && back {
		from := c.current
		prev := c.instances[from]
		c.current = instance
		b.opts.logger.Debug("mdns: an instance that said goodbye answers again; it takes its node back",
			"service", key.service, "node", key.id, "instance", instance, "from", from)
		if !sameData(prev.svc, sg.svc) {
			b.notifyLocked(resolver.Update, sg.svc)
		}
		return
	}
	if instance != c.current {
		if old == nil {
			b.opts.logger.Debug("mdns: a second instance claims a node; keeping the one seen first while it answers",
				"service", key.service, "node", key.id, "instance", instance, "kept", c.current)
		}
		return
	}
	if !sameData(old.svc, sg.svc) {
		b.notifyLocked(resolver.Update, sg.svc)
	}
}

func sameData(a, b *resolver.Service) bool {
	ea, _, _ := txt.Encode(a, a.Nodes[0], 1)
	eb, _, _ := txt.Encode(b, b.Nodes[0], 1)
	return slices.Equal(ea, eb)
}

// ttlOf is the liveness TTL kept for a sighting that claims secs seconds:
// at most the cap.
func (b *browser) ttlOf(secs int) time.Duration {
	limit := b.maxTTL()
	if int64(secs) > int64(limit/time.Second) {
		return limit // also before secs * time.Second could overflow
	}
	return min(time.Duration(secs)*time.Second, limit)
}

// maxTTL is the longest liveness TTL kept: MaxTTL, or four query
// intervals when that is longer, so that a node that answers every query
// is never expired between two.
func (b *browser) maxTTL() time.Duration {
	limit := b.opts.maxTTL
	if limit <= 0 {
		limit = MaxTTL
	}
	return max(limit, 4*b.opts.queryInterval)
}

// remove forgets an instance (a goodbye).
func (b *browser) remove(instance, why string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := time.Now()
	b.goodbyes[instance] = now
	if key, ok := b.instances[instance]; ok && b.nodes[key].current == instance {
		b.farewells[instance] = farewell{key: key, at: now}
	}
	b.dropLocked(instance, why)
}

// dropLocked forgets an instance. Its node is deleted only when no other
// instance claims it; when the instance was the one reported and others
// remain, the one seen last takes over. Caller must hold b.mu.
func (b *browser) dropLocked(instance, why string) {
	key, ok := b.instances[instance]
	if !ok {
		return
	}
	delete(b.instances, instance)
	c := b.nodes[key]
	gone := c.instances[instance]
	delete(c.instances, instance)
	if instance != c.current {
		b.opts.logger.Debug("mdns: second claim on a node gone", "service", key.service, "node", key.id, "instance", instance, "why", why)
		return
	}
	if len(c.instances) == 0 {
		delete(b.nodes, key)
		b.opts.logger.Debug("mdns: node gone", "instance", instance, "why", why)
		b.notifyLocked(resolver.Delete, gone.svc)
		return
	}
	var next string
	var nextSeen time.Time
	for inst, sg := range c.instances {
		// Ties go to the smaller name, so that the choice is reproducible.
		if next == "" || sg.lastSeen.After(nextSeen) || sg.lastSeen.Equal(nextSeen) && inst < next {
			next, nextSeen = inst, sg.lastSeen
		}
	}
	c.current = next
	b.opts.logger.Debug("mdns: node now reported from another instance that claims it",
		"service", key.service, "node", key.id, "instance", next, "gone", instance, "why", why)
	if cur := c.instances[next]; !sameData(gone.svc, cur.svc) {
		b.notifyLocked(resolver.Update, cur.svc)
	}
}

// queryLoop re-queries every interval and expires nodes not seen within
// their TTL.
func (b *browser) queryLoop() {
	defer b.wg.Done()
	first := true
	for {
		if err := b.c.query(b.opts.domain); err != nil {
			b.opts.logger.Warn("mdns: query failed", "error", err)
		}
		if first {
			// Answers to a query arrive within a few hundred milliseconds
			// (RFC 6762 responders delay up to 120 ms, plus probing).
			if !backoff.Sleep(b.ctx, 300*time.Millisecond, nil) {
				return
			}
			close(b.ready)
			first = false
		}
		// Expire several times per interval, so that a dead node goes
		// close to its TTL.
		for range 4 {
			if !backoff.Sleep(b.ctx, b.opts.queryInterval/4, nil) {
				return
			}
			b.expire(time.Now())
		}
	}
}

// expire forgets the instances not seen within their TTL, goodbyes older
// than lateWindow and farewells older than the cap.
func (b *browser) expire(now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	maps.DeleteFunc(b.goodbyes, func(_ string, bye time.Time) bool { return now.Sub(bye) >= lateWindow })
	maps.DeleteFunc(b.farewells, func(_ string, fw farewell) bool { return now.Sub(fw.at) >= b.maxTTL() })
	for _, c := range b.nodes {
		var dead []string
		for inst, sg := range c.instances {
			if now.Sub(sg.lastSeen) > sg.ttl {
				dead = append(dead, inst)
			}
		}
		// The reported instance goes last, so that it is taken over only
		// by an instance that is still answering.
		if i := slices.Index(dead, c.current); i >= 0 {
			dead = append(slices.Delete(dead, i, i+1), c.current)
		}
		for _, inst := range dead {
			b.dropLocked(inst, "not seen within its TTL")
		}
	}
}

// zeroconfBrowse runs a continuous zeroconf Browse as a second source of
// sightings.
func (b *browser) zeroconfBrowse() {
	defer b.wg.Done()
	res, err := zeroconf.NewResolver(zeroconf.SelectIfaces(b.c.ifaces), zeroconf.SelectIPTraffic(zeroconf.IPv4))
	if err != nil {
		b.opts.logger.Warn("mdns: zeroconf browse unavailable", "error", err)
		return
	}
	entries := make(chan *zeroconf.ServiceEntry, 16)
	if err := res.Browse(b.ctx, ServiceType, b.opts.domain, entries); err != nil {
		b.opts.logger.Warn("mdns: zeroconf browse failed", "error", err)
		return
	}
	for {
		select {
		case <-b.ctx.Done():
			// zeroconf closes entries when it has shut down.
			for range entries {
			}
			return
		case e, ok := <-entries:
			if !ok {
				return
			}
			b.seenFrom(e.ServiceInstanceName(), e.Text, time.Now(), true)
		}
	}
}

// service returns the cached nodes of a service, one per node id.
func (b *browser) service(name string) []*resolver.Service {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []*resolver.Service
	for key, c := range b.nodes {
		if key.service == name {
			out = append(out, c.instances[c.current].svc.Clone())
		}
	}
	return out
}

func (b *browser) serviceNames() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	names := map[string]bool{}
	for key := range b.nodes {
		names[key.service] = true
	}
	return slices.Sorted(maps.Keys(names))
}

// notifyLocked queues an event for interested watchers. Caller must hold
// b.mu, so that watchers see the changes in the order the cache made them.
func (b *browser) notifyLocked(a resolver.Action, s *resolver.Service) {
	b.watchers.Notify(a, s)
}

// watch adds a watcher of service ("" for all). The set adds it before ctx
// can stop it, so that a context ending meanwhile cannot leave a stopped
// watcher registered.
func (b *browser) watch(ctx context.Context, service string) *eventq.Watcher {
	return b.watchers.Watch(ctx, service)
}
