package mdns_test

import (
	"context"
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
	if !netns.Inside() {
		t.Fatal("refusing to multicast outside the private network namespace")
	}
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
	fqdnType := mdns.ServiceType + "." + mdns.DefaultDomain
	name, target := instance+"."+fqdnType, instance+"."+mdns.DefaultDomain
	hdr := func(name string, typ uint16) dns.RR_Header {
		return dns.RR_Header{Name: name, Rrtype: typ, Class: dns.ClassINET, Ttl: 120}
	}
	m := &dns.Msg{MsgHdr: dns.MsgHdr{Response: true, Authoritative: true}}
	m.Answer = []dns.RR{&dns.PTR{Hdr: hdr(fqdnType, dns.TypePTR), Ptr: name}}
	m.Extra = []dns.RR{
		&dns.SRV{Hdr: hdr(name, dns.TypeSRV), Target: target, Port: uint16(port)},
		&dns.TXT{Hdr: hdr(name, dns.TypeTXT), Txt: strs},
		&dns.A{Hdr: hdr(target, dns.TypeA), A: net.ParseIP(host)},
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
	cc, err := grpc.NewClient("mdns:///spoofed", grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithResolvers(mdns.NewBuilder(client, resolver.WithGracePeriod(100*time.Millisecond))))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	c := pb.NewGreeterClient(cc)
	call := func() {
		t.Helper()
		cctx, cancel := context.WithTimeout(tctx, 2*time.Second)
		defer cancel()
		rsp, err := c.Hello(cctx, &pb.Request{}, grpc.WaitForReady(true))
		if err != nil {
			t.Fatalf("call failed: %v", err)
		}
		if got := rsp.GetNode(); got != "live" {
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
