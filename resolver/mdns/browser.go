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

// entry is one node seen on the network.
type entry struct {
	svc      *resolver.Service
	ttl      time.Duration
	lastSeen time.Time
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

	mu       sync.Mutex
	cache    map[string]*entry          // by instance name (FQDN)
	watchers map[*eventq.Watcher]string // watcher -> service ('' for all)
}

func startBrowser(opts options, ifaces []net.Interface) (*browser, error) {
	c, err := listen(ifaces)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	b := &browser{opts: opts, c: c, fqdnType: ServiceType + "." + opts.domain, ctx: ctx, cancel: cancel,
		ready: make(chan struct{}), cache: map[string]*entry{}, watchers: map[*eventq.Watcher]string{}}
	b.wg.Add(3)
	go b.receive()
	go b.queryLoop()
	go b.zeroconfBrowse()
	return b, nil
}

func (b *browser) close() {
	b.cancel()
	b.c.Close() // unblocks receive
	b.wg.Wait()
	b.mu.Lock()
	ws := slices.Collect(maps.Keys(b.watchers))
	b.mu.Unlock()
	for _, w := range ws {
		w.Stop()
	}
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
	n, err := txt.Decode(strs)
	if err != nil {
		b.opts.logger.Debug("mdns: skipping instance with foreign TXT", "instance", instance, "error", err)
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	old, ok := b.cache[instance]
	b.cache[instance] = &entry{svc: n.Service, ttl: time.Duration(n.TTL) * time.Second, lastSeen: now}
	switch {
	case !ok:
		b.notifyLocked(resolver.Create, n.Service)
	case !sameData(old.svc, n.Service):
		b.notifyLocked(resolver.Update, n.Service)
	}
}

func sameData(a, b *resolver.Service) bool {
	ea, _, _ := txt.Encode(a, a.Nodes[0], 1)
	eb, _, _ := txt.Encode(b, b.Nodes[0], 1)
	return slices.Equal(ea, eb)
}

func (b *browser) remove(instance, why string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	e, ok := b.cache[instance]
	if !ok {
		return
	}
	delete(b.cache, instance)
	b.opts.logger.Debug("mdns: node gone", "instance", instance, "why", why)
	b.notifyLocked(resolver.Delete, e.svc)
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
			if !sleep(b.ctx, 300*time.Millisecond) {
				return
			}
			close(b.ready)
			first = false
		}
		// Expire several times per interval, so that a dead node goes
		// close to its TTL.
		for range 4 {
			if !sleep(b.ctx, b.opts.queryInterval/4) {
				return
			}
			b.expire(time.Now())
		}
	}
}

func (b *browser) expire(now time.Time) {
	b.mu.Lock()
	var dead []string
	for inst, e := range b.cache {
		if now.Sub(e.lastSeen) > e.ttl {
			dead = append(dead, inst)
		}
	}
	b.mu.Unlock()
	for _, inst := range dead {
		b.remove(inst, "not seen within its TTL")
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
			b.seen(e.ServiceInstanceName(), e.Text, time.Now())
		}
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// nodes returns the cached nodes of a service.
func (b *browser) nodes(name string) []*resolver.Service {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []*resolver.Service
	for _, e := range b.cache {
		if e.svc.Name == name {
			out = append(out, e.svc.Clone())
		}
	}
	return out
}

func (b *browser) serviceNames() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	names := map[string]bool{}
	for _, e := range b.cache {
		names[e.svc.Name] = true
	}
	return slices.Sorted(maps.Keys(names))
}

// notifyLocked queues an event for interested watchers. Caller must hold
// b.mu.
func (b *browser) notifyLocked(a resolver.Action, s *resolver.Service) {
	for w, service := range b.watchers {
		if service == "" || service == s.Name {
			w.Push(&resolver.Event{Action: a, Service: s.Clone(), Timestamp: time.Now()})
		}
	}
}

func (b *browser) watch(ctx context.Context, service string) *eventq.Watcher {
	var w *eventq.Watcher
	w = eventq.NewWatcher(ctx, func() {
		b.mu.Lock()
		delete(b.watchers, w)
		b.mu.Unlock()
	})
	b.mu.Lock()
	b.watchers[w] = service
	b.mu.Unlock()
	return w
}
