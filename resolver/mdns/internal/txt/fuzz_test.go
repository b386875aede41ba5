package txt

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/miekg/dns"

	"github.com/microgrpc/microgrpc/resolver"
)

// The strings Encode returns and Decode takes are TXT strings as
// github.com/miekg/dns holds them (and zeroconf hands them to it): the
// fuzz targets below pass them through miekg/dns's own packing and
// unpacking, as the network does.

// overTheWire packs strs into a TXT record, as a responder sends it, and
// unpacks it as a browser receives it. It returns the strings received and
// the record's data length in wire bytes.
func overTheWire(t *testing.T, strs []string) ([]string, int) {
	t.Helper()
	m := new(dns.Msg)
	m.Response = true
	m.Answer = []dns.RR{&dns.TXT{Hdr: dns.RR_Header{Name: "x._microgrpc._tcp.local.", Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 120}, Txt: strs}}
	buf, err := m.Pack()
	if err != nil {
		t.Fatalf("packing the TXT record %q: %v", strs, err)
	}
	var got dns.Msg
	if err := got.Unpack(buf); err != nil {
		t.Fatalf("unpacking the TXT record: %v", err)
	}
	rr := got.Answer[0].(*dns.TXT)
	return rr.Txt, int(rr.Hdr.Rdlength)
}

// txtRR unpacks data as the data of a TXT record, as a browser receives it
// from anyone on the network.
func txtRR(data []byte) ([]string, bool) {
	if len(data) > 0xffff {
		return nil, false
	}
	// Root name, type TXT, class IN, TTL 120, data length.
	msg := append([]byte{0, 0, 16, 0, 1, 0, 0, 0, 120, byte(len(data) >> 8), byte(len(data))}, data...)
	rr, _, err := dns.UnpackRR(msg, 0)
	if err != nil {
		return nil, false
	}
	t, ok := rr.(*dns.TXT)
	if !ok {
		return nil, false
	}
	return t.Txt, true
}

// rdata is the data of a TXT record holding strs, given in wire form.
func rdata(strs ...string) []byte {
	var b []byte
	for _, s := range strs {
		b = append(b, byte(len(s)))
		b = append(b, s...)
	}
	return b
}

// FuzzDecode feeds Decode the TXT records anyone on the network may send.
// What it accepts is a valid node with a positive TTL, and encoding that
// node again (when it fits) decodes to the same node: nothing is read that
// could not have been written.
func FuzzDecode(f *testing.F) {
	f.Add(rdata("svc=greeter", "id=n1", "a=127.0.0.1:1", "ttl=30"))
	f.Add(rdata("svc=greeter", "id=n1", "a=127.0.0.1:1", "ttl=30", "v=v1", "h=greeter", "m.zone=a", "s.team=core", "e=:/greeter.Greeter/Hello", "e=cs:/greeter.Greeter/Chat"))
	f.Add(rdata("svc=g", "id#1=2", "id#0=1", "a=h:1", "ttl=1", "e#0=c:/x", "e#1=y"))
	f.Add(rdata("svc=a/b", "id=n", "a=h:1", "ttl=1"))
	f.Add(rdata("svc=a", "id=n/1", "a=h:1", "ttl=1"))
	f.Add(rdata("svc=a", "id=n", "a=h:1", "ttl=99999999999"))
	f.Add(rdata("svc=z\xc3\xbcrich", "id=\"n\\", "a=h:1", "ttl=1", "m.k=\x00\xff"))
	f.Add(rdata("txtvers=1", "flag", "=", "#=", "m.#x=1"))
	f.Add(rdata("svc=g", "id=n", "a=h:1", "ttl=1", "e#0=:/a", "e#0=:/b", "e#1=x", "e#1=y", "e#3=z"))
	f.Fuzz(func(t *testing.T, data []byte) {
		strs, ok := txtRR(data)
		if !ok {
			return
		}
		n, err := Decode(strs)
		if err != nil {
			if n != nil {
				t.Fatalf("Decode returned a node and an error %v", err)
			}
			return
		}
		if err := n.Service.Validate(); err != nil {
			t.Fatalf("Decode(%q) gave an invalid node: %v", strs, err)
		}
		if len(n.Service.Nodes) != 1 {
			t.Fatalf("Decode gave %d nodes, want 1", len(n.Service.Nodes))
		}
		if n.TTL <= 0 || n.TTL > MaxTTL || time.Duration(n.TTL)*time.Second <= 0 {
			t.Fatalf("Decode gave TTL %d", n.TTL)
		}
		again, dropped, err := Encode(n.Service, n.Service.Nodes[0], n.TTL)
		if err != nil {
			if !errors.Is(err, ErrTooLarge) {
				t.Fatalf("Encode of a decoded node: %v", err)
			}
			return
		}
		received, _ := overTheWire(t, again)
		n2, err := Decode(received)
		if err != nil {
			t.Fatalf("Decode(Encode(Decode(%q))): %v", strs, err)
		}
		want := n.Service.Clone()
		want.Endpoints = want.Endpoints[:len(want.Endpoints)-dropped]
		if diff := cmp.Diff(n2.Service, want, cmpopts.EquateEmpty()); diff != "" || n2.TTL != n.TTL {
			t.Fatalf("Decode(Encode(Decode(%q))) differs: ttl %d, want %d (-got +want) %s", strs, n2.TTL, n.TTL, diff)
		}
	})
}

// FuzzRoundTrip encodes a node, sends the record through DNS packing and
// unpacking as zeroconf and the browser do, and decodes it: every valid
// node either comes back as it was (less the endpoints Encode says it
// dropped, and endpoint metadata, which TXT does not carry) or is refused
// with a clear error. Records stay within 255 wire bytes a string and
// Budget bytes in all.
func FuzzRoundTrip(f *testing.F) {
	f.Add("greeter", "v1", "n1", "127.0.0.1:8080", "greeter", "zone", "a", "team", "core", "/greeter.Greeter/Hello", byte(0), 30)
	f.Add("greeter", "", "n1", "[::1]:1", "", "long", strings.Repeat("x", 700), "", "", "/greeter.Greeter/Chat", byte(3), 1)
	f.Add("z\xc3\xbcrich", "v\"2\\", "n\x001", "h\xff:1", "h\t", "k", "caf\xc3\xa9", "\\065", "\"", "/a/b", byte(1), 3600)
	f.Add("s", "", "n", "h:1", "", "a#b", "v", "c#0", "w", "", byte(2), 5)
	f.Add("s", "", "n", "h:1", "", "a=b", "v", "", "", "e=:x", byte(0), 5)
	f.Add("s", "", "n", "h:1", "", "", "empty key", "", "", "", byte(0), 5)
	f.Add("s", "", "n", "h:1", "", "", "", "", "", "", byte(0), 1<<40) // a TTL beyond DNS's
	// Keys with no room left in a TXT string for their value once split
	// (Encode used to loop for ever on 250 bytes, and panic above).
	f.Add("s", "", "n", "h:1", "", strings.Repeat("k", 250), "vvv", "", "", "", byte(0), 5)
	f.Add("s", "", "n", "h:1", "", strings.Repeat("k", 252), "v", "", "", "", byte(0), 5)
	f.Fuzz(func(t *testing.T, name, version, id, addr, health, mk, mv, sk, sv, ep string, flags byte, ttl int) {
		if ttl <= 0 {
			return // Register never encodes a TTL under one second
		}
		s := &resolver.Service{Name: name, Version: version, Nodes: []resolver.Node{{ID: id, Address: addr, HealthService: health}}}
		if mk != "" || mv != "" {
			s.Nodes[0].Metadata = map[string]string{mk: mv}
		}
		if sk != "" || sv != "" {
			s.Metadata = map[string]string{sk: sv}
		}
		if ep != "" {
			e := resolver.Endpoint{Name: ep, ClientStreaming: flags&1 != 0, ServerStreaming: flags&2 != 0}
			// Several endpoints, so that some may be dropped to fit.
			for range 1 + int(flags>>2)%60 {
				s.Endpoints = append(s.Endpoints, e)
			}
		}
		if s.Validate() != nil {
			return
		}
		strs, dropped, err := Encode(s, s.Nodes[0], ttl)
		if err != nil {
			if !errors.Is(err, ErrTooLarge) && !errors.Is(err, ErrBadKey) {
				t.Fatalf("Encode: an error that is neither ErrTooLarge nor ErrBadKey: %v", err)
			}
			return
		}
		if dropped < 0 || dropped > len(s.Endpoints) {
			t.Fatalf("Encode dropped %d of %d endpoints", dropped, len(s.Endpoints))
		}
		received, size := overTheWire(t, strs) // fails on a string over 255 bytes
		if size > Budget {
			t.Fatalf("record of %d wire bytes, budget %d", size, Budget)
		}
		n, err := Decode(received)
		if err != nil {
			t.Fatalf("Decode(Encode(node)) = %v; sent %q, received %q", err, strs, received)
		}
		want := s.Clone()
		want.Endpoints = want.Endpoints[:len(want.Endpoints)-dropped]
		if diff := cmp.Diff(n.Service, want, cmpopts.EquateEmpty()); diff != "" || n.TTL != min(ttl, MaxTTL) {
			t.Fatalf("round trip: ttl %d, want %d (-got +want) %s\nsent %q\nreceived %q", n.TTL, min(ttl, MaxTTL), diff, strs, received)
		}
	})
}
