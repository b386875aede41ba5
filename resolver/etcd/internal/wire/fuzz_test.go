package wire

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/microgrpc/microgrpc/resolver"
)

// etcdUpdate is the value etcd's endpoints.Manager writes and its gRPC
// naming resolver reads (go.etcd.io/etcd/client/v3/naming/endpoints/internal.Update,
// which cannot be imported): encoding/json of these three fields.
type etcdUpdate struct {
	Op       uint8
	Addr     string
	Metadata any
}

// FuzzDecode feeds Decode any value stored under a valid key (the registry
// checks the key before it decodes): it fails only with ErrMalformed, and
// what it accepts is one valid node of the key's service, with the key's
// node id and the value's address. A value that decodes encodes back to
// one that decodes to the same node.
func FuzzDecode(f *testing.F) {
	ours, _ := Encode(&resolver.Service{Name: "greeter", Version: "v1", Metadata: map[string]string{"team": "core"},
		Endpoints: []resolver.Endpoint{{Name: "/greeter.Greeter/Chat", ClientStreaming: true, ServerStreaming: true}}},
		resolver.Node{ID: "n1", Address: "127.0.0.1:1", Metadata: map[string]string{"zone": "a"}, HealthService: "greeter"})
	f.Add(ours, "greeter", "n1")
	f.Add(ours, "greeter", "n2") // another node's key
	f.Add([]byte(`{"Op":0,"Addr":"127.0.0.1:1","Metadata":null}`), "greeter", "n1")
	f.Add([]byte(`{"Op":0,"Addr":"127.0.0.1:1","Metadata":{"zone":"a","weight":3}}`), "greeter", "n1")
	f.Add([]byte(`{"Op":0,"Addr":"127.0.0.1:1","Metadata":{"zone":"a"}}`), "greeter", "n1")
	f.Add([]byte(`{"Op":1,"Addr":"127.0.0.1:1"}`), "greeter", "n1")
	f.Add([]byte(`{"op":0,"addr":"h:1","metadata":{"ID":"n1","Service":"greeter","endpoints":[{"Name":"/x"}]}}`), "greeter", "n1")
	f.Add([]byte(`{"Op":0,"Addr":"h:1","Metadata":{"id":"n1","service":"greeter","metadata":{"k":1}}}`), "greeter", "n1")
	f.Add([]byte(`{"Op":256}`), "greeter", "n1")
	f.Add([]byte(`[1,2`), "greeter", "n1")
	f.Fuzz(func(t *testing.T, value []byte, service, id string) {
		if resolver.ValidateName(service) != nil || id == "" || strings.Contains(id, "/") {
			return // splitKey refuses such keys before decoding
		}
		s, err := Decode(value, service, id)
		if err != nil {
			if s != nil || !errors.Is(err, ErrMalformed) {
				t.Fatalf("Decode = %v, %v; want nil and ErrMalformed", s, err)
			}
			return
		}
		if err := s.Validate(); err != nil {
			t.Fatalf("Decode(%q) gave an invalid node: %v", value, err)
		}
		if s.Name != service || len(s.Nodes) != 1 || s.Nodes[0].ID != id {
			t.Fatalf("Decode(%q) under %s/%s gave %d nodes of %q, first %q", value, service, id, len(s.Nodes), s.Name, s.Nodes[0].ID)
		}
		var u etcdUpdate
		if err := json.Unmarshal(value, &u); err != nil || u.Addr != s.Nodes[0].Address {
			t.Fatalf("Decode(%q) gave address %q; etcd's resolver reads %q (%v)", value, s.Nodes[0].Address, u.Addr, err)
		}
		again, err := Encode(s, s.Nodes[0])
		if err != nil {
			// What came from JSON is UTF-8; the key's names may not be.
			if errors.Is(err, resolver.ErrInvalidService) && (!utf8.ValidString(service) || !utf8.ValidString(id)) {
				return
			}
			t.Fatalf("Encode of a decoded node: %v", err)
		}
		s2, err := Decode(again, service, id)
		if err != nil {
			t.Fatalf("Decode(Encode(Decode(%q))) = %v", value, err)
		}
		if diff := cmp.Diff(s2, s, cmpopts.EquateEmpty()); diff != "" {
			t.Fatalf("Decode(Encode(Decode(%q))) differs (-got +want) %s", value, diff)
		}
	})
}

// FuzzRoundTrip encodes a node as Register does and decodes it as the
// registry and etcd's own naming resolver do: every valid node comes back
// as it was, and etcd's resolver reads its address; or, when a string is
// not UTF-8 (JSON carries nothing else), Encode refuses it with
// ErrInvalidService.
func FuzzRoundTrip(f *testing.F) {
	f.Add("greeter", "v1", "n1", "127.0.0.1:1", "greeter", "zone", "a", "team", "core", "/greeter.Greeter/Hello", "k", "v", byte(3))
	f.Add("z\u00fcrich", "", "n\u2028", "[::1]:1", "", "", "", "", "", "", "", "", byte(0))
	f.Add("s", "\"", "n", "h:1", "<>&", "", "\x00", "id", "service", "e", "", "", byte(1))
	f.Add("s", "", "n\xfc", "h:1", "", "", "", "", "", "", "", "", byte(0))
	f.Add("s", "", "n", "h:1", "", "", "", "", "", "/e", "k", "\xff", byte(0))
	f.Fuzz(func(t *testing.T, name, version, id, addr, health, mk, mv, sk, sv, ep, ek, ev string, flags byte) {
		s := &resolver.Service{Name: name, Version: version, Nodes: []resolver.Node{{ID: id, Address: addr, HealthService: health}}}
		if mk != "" || mv != "" {
			s.Nodes[0].Metadata = map[string]string{mk: mv}
		}
		if sk != "" || sv != "" {
			s.Metadata = map[string]string{sk: sv}
		}
		if ep != "" {
			e := resolver.Endpoint{Name: ep, ClientStreaming: flags&1 != 0, ServerStreaming: flags&2 != 0}
			if ek != "" || ev != "" {
				e.Metadata = map[string]string{ek: ev}
			}
			s.Endpoints = []resolver.Endpoint{e}
		}
		if s.Validate() != nil {
			return
		}
		used := []string{name, version, id, addr, health}
		if ep != "" {
			used = append(used, ep, ek, ev)
		}
		allUTF8 := true
		for _, str := range append(used, mk, mv, sk, sv) {
			allUTF8 = allUTF8 && utf8.ValidString(str)
		}
		value, err := Encode(s, s.Nodes[0])
		if !allUTF8 {
			if !errors.Is(err, resolver.ErrInvalidService) {
				t.Fatalf("Encode of a node with a string that is not UTF-8 = %s, %v; want ErrInvalidService", value, err)
			}
			return
		}
		if err != nil {
			t.Fatalf("Encode: %v", err)
		}
		got, err := Decode(value, name, id)
		if err != nil {
			t.Fatalf("Decode(Encode(node)) = %v; value %s", err, value)
		}
		if diff := cmp.Diff(got, s, cmpopts.EquateEmpty()); diff != "" {
			t.Fatalf("round trip (-got +want) %s\nvalue %s", diff, value)
		}
		var u etcdUpdate
		if err := json.Unmarshal(value, &u); err != nil || u.Op != OpAdd || u.Addr != addr {
			t.Fatalf("etcd's naming resolver reads %+v, %v from %s", u, err, value)
		}
	})
}

// FuzzEtcdNaming stores what etcd's endpoints.Manager writes for a plain
// grpc-go server (any JSON metadata): the registry reads the key's node
// at the value's address, with the metadata when it is an object of
// strings, and skips nothing that etcd's resolver would use.
func FuzzEtcdNaming(f *testing.F) {
	f.Add("127.0.0.1:1", []byte(`null`))
	f.Add("127.0.0.1:1", []byte(`{"zone":"a"}`))
	f.Add("h:1", []byte(`{"zone":1}`))
	f.Add("h:1", []byte(`{"id":"x","service":"y"}`))
	f.Add("h:1", []byte(`{"id":"n1","service":"greeter","version":"v9"}`))
	f.Add("", []byte(`"text"`))
	f.Fuzz(func(t *testing.T, addr string, metadata []byte) {
		var md any
		if json.Unmarshal(metadata, &md) != nil || !utf8.ValidString(addr) {
			return
		}
		value, err := json.Marshal(etcdUpdate{Op: 0, Addr: addr, Metadata: md})
		if err != nil {
			t.Fatal(err)
		}
		s, err := Decode(value, "greeter", "n1")
		if addr == "" {
			if err == nil {
				t.Fatalf("Decode(%s) accepted a node without an address", value)
			}
			return
		}
		var ours Node
		isOurs := json.Unmarshal(metadata, &ours) == nil && ours.ID != "" && ours.Service != ""
		if err != nil {
			// Only a record of ours may be refused: one that names
			// another node than its key.
			if isOurs && (ours.ID != "n1" || ours.Service != "greeter") {
				return
			}
			t.Fatalf("Decode(%s) = %v", value, err)
		}
		if s.Name != "greeter" || len(s.Nodes) != 1 || s.Nodes[0].ID != "n1" || s.Nodes[0].Address != addr {
			t.Fatalf("Decode(%s) gave %d nodes, first %q of %q at %q", value, len(s.Nodes), s.Nodes[0].ID, s.Name, s.Nodes[0].Address)
		}
		if isOurs {
			return // FuzzDecode checks those
		}
		var want map[string]string
		if json.Unmarshal(metadata, &want) != nil {
			want = nil // not an object of strings: no metadata
		}
		if diff := cmp.Diff(s.Nodes[0].Metadata, want, cmpopts.EquateEmpty()); diff != "" {
			t.Fatalf("Decode(%s) metadata (-got +want) %s", value, diff)
		}
	})
}
