package mdns

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/miekg/dns"

	"github.com/microgrpc/microgrpc/internal/netns"
	"github.com/microgrpc/microgrpc/resolver"
	"github.com/microgrpc/microgrpc/resolver/mdns/internal/txt"
)

// These fuzz targets feed a browser's cache the responses anyone on the
// link may send, as its socket receives them (bytes unpacked by
// github.com/miekg/dns, then handle). Nothing is sent or received.

// fuzzBrowser is a browser that is never started.
func fuzzBrowser() *browser {
	return newBrowser(options{domain: DefaultDomain, logger: slog.New(slog.DiscardHandler)}, nil)
}

// fqdnType is the DNS-SD type's name in the default domain.
const fqdnType = ServiceType + "." + DefaultDomain

// announcement is the response a responder sends for node n of s under
// instance: PTR, SRV, TXT and A records, as zeroconf sends them; ttl 0
// makes it a goodbye.
func announcement(s *resolver.Service, strs []string, instance string, ttl uint32) *dns.Msg {
	fqdn := instance + "." + fqdnType
	host := "mg-host." + DefaultDomain
	hdr := func(name string, t uint16) dns.RR_Header {
		return dns.RR_Header{Name: name, Rrtype: t, Class: dns.ClassINET, Ttl: ttl}
	}
	m := new(dns.Msg)
	m.Response, m.Authoritative = true, true
	m.Answer = []dns.RR{&dns.PTR{Hdr: hdr(fqdnType, dns.TypePTR), Ptr: fqdn}}
	m.Extra = []dns.RR{
		&dns.SRV{Hdr: hdr(fqdn, dns.TypeSRV), Port: 8080, Target: host},
		&dns.TXT{Hdr: hdr(fqdn, dns.TypeTXT), Txt: strs},
		&dns.A{Hdr: hdr(host, dns.TypeA), A: net.IPv4(127, 0, 0, 1)},
	}
	return m
}

func mustPack(tb testing.TB, m *dns.Msg) []byte {
	tb.Helper()
	buf, err := m.Pack()
	if err != nil {
		tb.Fatal(err)
	}
	return buf
}

func mustEncode(tb testing.TB, s *resolver.Service, ttl int) []string {
	tb.Helper()
	strs, _, err := txt.Encode(s, s.Nodes[0], ttl)
	if err != nil {
		tb.Fatal(err)
	}
	return strs
}

// cacheState is what the cache reports: per node, the instance reported
// and its data.
type cacheState map[nodeKey]string

// checkCache checks that the cache is consistent and holds only valid
// nodes, and returns what it reports.
func checkCache(t *testing.T, b *browser) cacheState {
	t.Helper()
	b.mu.Lock()
	state := cacheState{}
	for key, c := range b.nodes {
		cur, ok := c.instances[c.current]
		if !ok {
			t.Fatalf("node %v: reported instance %q is not among its claims", key, c.current)
		}
		for inst, sg := range c.instances {
			if b.instances[inst] != key {
				t.Fatalf("instance %q claims %v but is indexed under %v", inst, key, b.instances[inst])
			}
			if sg.ttl <= 0 {
				t.Fatalf("instance %q has TTL %v", inst, sg.ttl)
			}
		}
		strs, _, _ := txt.Encode(cur.svc, cur.svc.Nodes[0], 1)
		state[key] = c.current + " " + strings.Join(strs, " ")
	}
	for inst, key := range b.instances {
		if c := b.nodes[key]; c == nil || c.instances[inst] == nil {
			t.Fatalf("instance %q indexed under %v, which does not hold it", inst, key)
		}
	}
	b.mu.Unlock()
	for _, name := range b.serviceNames() {
		for _, s := range b.service(name) {
			if err := s.Validate(); err != nil {
				t.Fatalf("cache reports an invalid node: %v", err)
			}
			if s.Name != name || len(s.Nodes) != 1 {
				t.Fatalf("cache reports %d nodes of %q under %q", len(s.Nodes), s.Name, name)
			}
		}
	}
	return state
}

// FuzzHandle feeds the browser any packet: whatever unpacks as a response
// leaves a consistent cache of valid nodes, and the same packet received
// twice (mDNS repeats announcements) changes nothing the second time.
func FuzzHandle(f *testing.F) {
	s := &resolver.Service{Name: "greeter", Version: "v1", Endpoints: []resolver.Endpoint{{Name: "/greeter.Greeter/Hello"}},
		Nodes: []resolver.Node{{ID: "n1", Address: "127.0.0.1:8080", Metadata: map[string]string{"zone": "z\u00fcrich"}}}}
	strs := mustEncode(f, s, 30)
	inst := instanceName(s.Name, "n1", 0)
	f.Add(mustPack(f, announcement(s, strs, inst, 120)))
	f.Add(mustPack(f, announcement(s, strs, inst, 0)))
	// The spoof of issue 3: a goodbye for the live instance and another
	// instance claiming its node, in one packet.
	spoof := announcement(s, strs, "spoofer", 120)
	spoof.Answer = append(spoof.Answer, &dns.PTR{Hdr: dns.RR_Header{Name: fqdnType, Rrtype: dns.TypePTR, Class: dns.ClassINET}, Ptr: inst + "." + fqdnType})
	f.Add(mustPack(f, spoof))
	// Foreign and malformed TXT data, and an invalid node.
	f.Add(mustPack(f, announcement(s, []string{"txtvers=1", "svc=a/b", "id=n", "a=h:1", "ttl=1"}, "foreign", 120)))
	f.Add(mustPack(f, announcement(s, []string{"svc=a", "id=n", "a=h:1", "ttl=99999999999"}, "long", 120)))
	f.Add([]byte{0, 0, 0x84, 0, 0, 0, 0, 1, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		var m dns.Msg
		if err := m.Unpack(data); err != nil || !m.Response {
			return // receive drops these
		}
		b := fuzzBrowser()
		defer b.cancel()
		b.handle(&m)
		first := checkCache(t, b)
		b.handle(&m)
		if diff := cmp.Diff(checkCache(t, b), first); diff != "" {
			t.Fatalf("the same packet again changed the cache (-got +want) %s", diff)
		}
	})
}

// FuzzAnswer announces a node as a responder does, packed and unpacked,
// and checks that the browser reports exactly that node (less the
// endpoints the record had no room for, and endpoint metadata, which TXT
// does not carry), and forgets it on its goodbye.
func FuzzAnswer(f *testing.F) {
	f.Add("greeter", "v1", "n1", "127.0.0.1:8080", "zone", "a", "/greeter.Greeter/Hello", 30)
	f.Add("caf\u00e9", "v\"2\\", "n\x00", "h\xff:1", "\\065", "\x7f", "/a", 1)
	f.Add("s", "", "n#1", "h:1", "k#0", "v", "", 3600)
	f.Fuzz(func(t *testing.T, name, version, id, addr, mk, mv, ep string, ttl int) {
		if ttl <= 0 || ttl > 1<<20 {
			return // Register's TTLs: seconds, rounded up, and sane
		}
		s := &resolver.Service{Name: name, Version: version, Nodes: []resolver.Node{{ID: id, Address: addr, Metadata: map[string]string{mk: mv}}}}
		if ep != "" {
			s.Endpoints = []resolver.Endpoint{{Name: ep, ServerStreaming: true}}
		}
		if s.Validate() != nil {
			return
		}
		strs, dropped, err := txt.Encode(s, s.Nodes[0], ttl)
		if err != nil {
			return // refused at Register, with the error
		}
		inst := instanceName(s.Name, id, 0)
		b := fuzzBrowser()
		defer b.cancel()
		var m dns.Msg
		if err := m.Unpack(mustPack(t, announcement(s, strs, inst, 120))); err != nil {
			t.Fatal(err)
		}
		b.handle(&m)
		checkCache(t, b)
		want := s.Clone()
		want.Endpoints = want.Endpoints[:len(want.Endpoints)-dropped]
		got := b.service(name)
		if len(got) != 1 {
			t.Fatalf("browser reports %d nodes of %q, want 1; TXT %q", len(got), name, strs)
		}
		if diff := cmp.Diff(got[0], want, cmpopts.EquateEmpty()); diff != "" {
			t.Fatalf("browser reports another node than announced (-got +want) %s\nTXT %q", diff, strs)
		}
		var bye dns.Msg
		if err := bye.Unpack(mustPack(t, announcement(s, strs, inst, 0))); err != nil {
			t.Fatal(err)
		}
		b.handle(&bye)
		if got := b.service(name); len(got) != 0 || slices.Contains(b.serviceNames(), name) {
			t.Fatalf("after its goodbye the browser still reports %d nodes of %q", len(got), name)
		}
	})
}

// TestAnyBytesOverTheNetwork registers, through zeroconf, a node whose
// data holds UTF-8, quotes and backslashes, and finds it as it was: TXT
// strings used to arrive as miekg/dns's escapes ("z\\195\\188rich").
func TestAnyBytesOverTheNetwork(t *testing.T) {
	if !netns.Inside() {
		t.Fatal("refusing to multicast outside the private network namespace")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := NewRegistry(WithQueryInterval(400*time.Millisecond), WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	s := &resolver.Service{Name: "caf\u00e9", Version: "v\u00e9", Metadata: map[string]string{"q": `a"b\c\065`},
		Endpoints: []resolver.Endpoint{{Name: "/caf\u00e9.Caf\u00e9/H\u00e9llo"}},
		Nodes:     []resolver.Node{{ID: "n\u00e9", Address: "127.0.0.1:9", Metadata: map[string]string{"zone": "z\u00fcrich", "k#1": "\x01\x7f"}}}}
	if err := r.Register(ctx, s); err != nil {
		t.Fatal(err)
	}
	for {
		got, err := r.GetService(ctx, s.Name)
		if err == nil {
			if diff := cmp.Diff(got, []*resolver.Service{s}); diff != "" {
				t.Fatalf("found another node than registered (-got +want) %s", diff)
			}
			return
		}
		if !errors.Is(err, resolver.ErrNotFound) {
			t.Fatal(err)
		}
		select {
		case <-ctx.Done():
			t.Fatalf("node not found: %v", err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
