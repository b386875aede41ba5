package mdns_test

import (
	"context"
	"errors"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/net/ipv4"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/microgrpc/microgrpc/internal/netns"
	pb "github.com/microgrpc/microgrpc/proto/greeter"
	"github.com/microgrpc/microgrpc/resolver"
	"github.com/microgrpc/microgrpc/resolver/mdns"
	"github.com/microgrpc/microgrpc/resolver/mdns/internal/txt"
)

// spoof multicasts one mDNS response, as any host on the link could: it
// announces the DNS-SD instance with the data of s's node and a liveness
// TTL of ttl seconds, and then never answers again.
func spoof(t *testing.T, instance string, s *resolver.Service, ttl int) {
	t.Helper()
	send(t, announcement(t, instance, s, ttl))
}

// announcement is the response that announces instance with the data of
// s's node and a liveness TTL of ttl seconds, as a responder sends it.
func announcement(t *testing.T, instance string, s *resolver.Service, ttl int) *dns.Msg {
	t.Helper()
	strs, _, err := txt.Encode(s, s.Nodes[0], ttl)
	if err != nil {
		t.Fatal(err)
	}
	host, portStr, err := net.SplitHostPort(s.Nodes[0].Address)
	if err != nil {
		t.Fatal(err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		t.Fatal(err)
	}
	name, target := instanceFQDN(instance), instance+"."+mdns.DefaultDomain
	m := &dns.Msg{MsgHdr: dns.MsgHdr{Response: true, Authoritative: true}}
	m.Answer = []dns.RR{&dns.PTR{Hdr: rrHeader(fqdnType, dns.TypePTR, 120), Ptr: name}}
	m.Extra = []dns.RR{
		&dns.SRV{Hdr: rrHeader(name, dns.TypeSRV, 120), Target: target, Port: uint16(port)},
		&dns.TXT{Hdr: rrHeader(name, dns.TypeTXT, 120), Txt: strs},
		&dns.A{Hdr: rrHeader(target, dns.TypeA, 120), A: net.ParseIP(host)},
	}
	return m
}

// goodbye is the response that says goodbye (TTL 0) for instance, as its
// responder does when it shuts down.
func goodbye(instance string) *dns.Msg {
	name := instanceFQDN(instance)
	m := &dns.Msg{MsgHdr: dns.MsgHdr{Response: true, Authoritative: true}}
	m.Answer = []dns.RR{&dns.PTR{Hdr: rrHeader(fqdnType, dns.TypePTR, 0), Ptr: name}}
	m.Extra = []dns.RR{
		&dns.SRV{Hdr: rrHeader(name, dns.TypeSRV, 0), Target: instance + "." + mdns.DefaultDomain},
		&dns.TXT{Hdr: rrHeader(name, dns.TypeTXT, 0), Txt: []string{""}},
	}
	return m
}

const fqdnType = mdns.ServiceType + "." + mdns.DefaultDomain

func instanceFQDN(instance string) string { return instance + "." + fqdnType }

func rrHeader(name string, typ uint16, ttl uint32) dns.RR_Header {
	return dns.RR_Header{Name: name, Rrtype: typ, Class: dns.ClassINET, Ttl: ttl}
}

// send multicasts m on loopback, inside the private network namespace.
func send(t *testing.T, m *dns.Msg) {
	t.Helper()
	if !netns.Inside() {
		t.Fatal("refusing to multicast outside the private network namespace")
	}
	buf, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	udp, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4zero})
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	pc := ipv4.NewPacketConn(udp)
	if err := pc.SetMulticastInterface(lo); err != nil {
		t.Fatal(err)
	}
	if _, err := pc.WriteTo(buf, nil, &net.UDPAddr{IP: net.IPv4(224, 0, 0, 251), Port: 5353}); err != nil {
		t.Fatal(err)
	}
}

// One spoofed packet claiming a live node's id, with a short TTL, must not
// take the live node away: not while it lasts, and not when it expires.
func TestSpoofedNodeIDKeepsLiveNode(t *testing.T) {
	server, client := newRegistry(t), newRegistry(t)
	tctx := ctx(t)
	live := svc("spoofed", "n1", greeter(t, "live"))
	if err := server.Register(tctx, live); err != nil {
		t.Fatal(err)
	}
	// A short grace period, so that a node list wrongly emptied shows at
	// once rather than after the default 10 s.
	hello := greeterCall(t, tctx, client, "spoofed", resolver.WithGracePeriod(100*time.Millisecond))
	call := func() {
		t.Helper()
		if got := hello(); got != "live" {
			t.Fatalf("call reached node %q, want the live one", got)
		}
	}
	call()

	spoof(t, "impostor", svc("spoofed", "n1", greeter(t, "fake")), 1)
	// Calls keep reaching the live node while the browser sees the impostor
	// and after it expires.
	for _, want := range []int{2, 1} {
		for client.Sightings("spoofed") != want {
			if tctx.Err() != nil {
				t.Fatalf("browser saw %d instances of the node, want %d", client.Sightings("spoofed"), want)
			}
			call()
		}
	}
	svcs, err := client.GetService(tctx, "spoofed")
	if err != nil || len(svcs) != 1 || len(svcs[0].Nodes) != 1 || svcs[0].Nodes[0].Address != live.Nodes[0].Address {
		t.Fatalf("GetService after the impostor expired = %v, %v; want the live node", svcs, err)
	}
	// Past the resolver's grace period and a few re-queries.
	until := time.Now().Add(time.Second)
	for time.Now().Before(until) {
		call()
	}
}

// greeterCall returns a function that calls the greeter service through
// r, failing the test if the call fails, and returns the node that
// answered.
func greeterCall(t *testing.T, ctx context.Context, r *mdns.Registry, service string, opts ...resolver.BuilderOption) func() string {
	t.Helper()
	cc, err := grpc.NewClient("mdns:///"+service, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithResolvers(mdns.NewBuilder(r, opts...)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	c := pb.NewGreeterClient(cc)
	return func() string {
		t.Helper()
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		rsp, err := c.Hello(cctx, &pb.Request{}, grpc.WaitForReady(true))
		if err != nil {
			t.Fatalf("call failed: %v", err)
		}
		return rsp.GetNode()
	}
}

// hugeTTL is a liveness TTL of some thirty years, as a spoofer would claim.
const hugeTTL = 1_000_000_000

// waitAddress waits until the registry reports exactly one node of service,
// at addr, and returns how long that took; it fails the test after within.
func waitAddress(t *testing.T, r *mdns.Registry, service, addr string, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	var svcs []*resolver.Service
	var err error
	for time.Since(start) < within {
		svcs, err = r.GetService(ctx(t), service)
		if err == nil && len(svcs) == 1 && len(svcs[0].Nodes) == 1 && svcs[0].Nodes[0].Address == addr {
			return time.Since(start)
		}
		time.Sleep(20 * time.Millisecond)
	}
	var got []string
	for _, s := range svcs {
		for _, n := range s.Nodes {
			got = append(got, n.ID+"@"+n.Address)
		}
	}
	t.Fatalf("after %v %q resolves to %v (%v); want one node at %s", within, service, got, err, addr)
	return 0
}

// One packet saying goodbye for a live node's instance and announcing an
// impostor for its node id, with a huge TTL, makes the impostor the node's
// first claim. The live node's next answer takes the node back, and the
// impostor's TTL is capped.
func TestSpoofedGoodbyeDoesNotHijackLiveNode(t *testing.T) {
	server, client := newRegistry(t), newRegistry(t)
	tctx := ctx(t)
	live := svc("hijack", "n1", greeter(t, "live"))
	if err := server.Register(tctx, live); err != nil {
		t.Fatal(err)
	}
	waitAddress(t, client, "hijack", live.Nodes[0].Address, 5*time.Second)
	call := greeterCall(t, tctx, client, "hijack")
	if got := call(); got != "live" {
		t.Fatalf("call reached node %q, want the live one", got)
	}

	m := goodbye(mdns.InstanceName("hijack", "n1", 0))
	rogue := announcement(t, "impostor", svc("hijack", "n1", greeter(t, "fake")), hugeTTL)
	m.Answer = append(m.Answer, rogue.Answer...)
	m.Extra = append(m.Extra, rogue.Extra...)
	sent := time.Now()
	send(t, m)
	// The impostor is seen and the live node heard again: it answers every
	// query (400 ms apart here), so within a few query intervals.
	within := 3 * 400 * time.Millisecond
	for client.SightingTTL("impostor") == 0 || client.Sightings("hijack") != 2 {
		if time.Since(sent) > within {
			t.Fatalf("%v after the packet the browser sees %d instances of the node, want the live one and the impostor",
				within, client.Sightings("hijack"))
		}
		time.Sleep(10 * time.Millisecond)
	}
	waitAddress(t, client, "hijack", live.Nodes[0].Address, within-time.Since(sent))
	t.Logf("the live node has its id back %v after the packet", time.Since(sent))
	// Calls follow: the resolver has the live address again, for good.
	for call() != "live" {
		if tctx.Err() != nil {
			t.Fatal("calls do not reach the live node again")
		}
	}
	until := time.Now().Add(time.Second)
	for time.Now().Before(until) {
		if got := call(); got != "live" {
			t.Fatalf("call reached node %q after the live node took its id back", got)
		}
	}
	if got := client.SightingTTL("impostor"); got != mdns.MaxTTL {
		t.Fatalf("the impostor's TTL is kept as %v, want it capped at %v", got, mdns.MaxTTL)
	}
}

// A node announced once by a stranger with a huge TTL (never registered,
// never answering) is gone once the cap has passed.
func TestAnnouncedOnceExpiresAtTheCap(t *testing.T) {
	const maxTTL = 2 * time.Second // at least four query intervals of 400 ms
	client, err := mdns.NewRegistry(mdns.WithQueryInterval(400*time.Millisecond), mdns.WithLogger(quiet), mdns.WithMaxTTL(maxTTL))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	tctx := ctx(t)
	if _, err := client.ListServices(tctx); err != nil { // starts browsing
		t.Fatal(err)
	}
	rogue := svc("once", "r1", greeter(t, "rogue"))
	spoof(t, "rogue-once", rogue, hugeTTL)
	waitAddress(t, client, "once", rogue.Nodes[0].Address, 2*time.Second)
	seen := time.Now()
	if got := client.SightingTTL("rogue-once"); got != maxTTL {
		t.Errorf("the rogue's TTL is kept as %v, want it capped at %v", got, maxTTL)
	}
	for {
		_, err := client.GetService(tctx, "once")
		if errors.Is(err, resolver.ErrNotFound) {
			break
		}
		if tctx.Err() != nil {
			t.Fatalf("rogue node still resolved %v after it was seen (cap %v): %v", time.Since(seen), maxTTL, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Expiry runs every quarter query interval.
	if d := time.Since(seen); d < maxTTL-100*time.Millisecond || d > maxTTL+time.Second {
		t.Fatalf("rogue node gone %v after it was seen, want about %v", d, maxTTL)
	} else {
		t.Logf("rogue node gone %v after it was seen (cap %v)", d, maxTTL)
	}
}
