package txt

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/microgrpc/microgrpc/resolver"
)

func TestRoundTripWithLongValues(t *testing.T) {
	long := strings.Repeat("x", 700) // needs three TXT strings
	s := &resolver.Service{Name: "greeter", Version: "v1", Metadata: map[string]string{"team": "core"},
		Endpoints: []resolver.Endpoint{{Name: "/greeter.Greeter/Hello"}, {Name: "/greeter.Greeter/Chat", ClientStreaming: true, ServerStreaming: true},
			{Name: "/" + strings.Repeat("y", 300)}},
		Nodes: []resolver.Node{{ID: "n1", Address: "127.0.0.1:1", Metadata: map[string]string{"long": long, "zone": "a"}, HealthService: "greeter"}}}
	strs, dropped, err := Encode(s, s.Nodes[0], 30)
	if err != nil || dropped != 0 {
		t.Fatalf("Encode = %d dropped, %v", dropped, err)
	}
	total := 0
	for _, x := range strs {
		if len(x) > 255 {
			t.Fatalf("TXT string of %d bytes", len(x))
		}
		total += len(x) + 1
	}
	if total > Budget {
		t.Fatalf("record of %d bytes", total)
	}
	got, err := Decode(strs)
	if err != nil {
		t.Fatal(err)
	}
	if got.TTL != 30 {
		t.Fatalf("ttl %d", got.TTL)
	}
	if diff := cmp.Diff(got.Service, s); diff != "" {
		t.Fatalf("(-got +want) %s", diff)
	}
}

func TestTooManyEndpointsAreDroppedNotFatal(t *testing.T) {
	s := &resolver.Service{Name: "big", Nodes: []resolver.Node{{ID: "n", Address: "127.0.0.1:1"}}}
	for i := range 200 {
		s.Endpoints = append(s.Endpoints, resolver.Endpoint{Name: fmt.Sprintf("/big.Service/Method%03d", i)})
	}
	strs, dropped, err := Encode(s, s.Nodes[0], 30)
	if err != nil {
		t.Fatal(err)
	}
	if dropped == 0 || dropped == 200 {
		t.Fatalf("dropped %d of 200 endpoints; want some kept and some dropped", dropped)
	}
	got, err := Decode(strs)
	if err != nil || len(got.Service.Endpoints) != 200-dropped || got.Service.Nodes[0].Address != "127.0.0.1:1" {
		t.Fatalf("decoded %d endpoints, %v", len(got.Service.Endpoints), err)
	}
}

func TestMetadataTooLarge(t *testing.T) {
	s := &resolver.Service{Name: "x", Nodes: []resolver.Node{{ID: "n", Address: "a:1", Metadata: map[string]string{"blob": strings.Repeat("z", 2000)}}}}
	if _, _, err := Encode(s, s.Nodes[0], 30); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Encode = %v, want ErrTooLarge", err)
	}
}

func TestDecodeRejectsForeignRecords(t *testing.T) {
	for _, strs := range [][]string{nil, {"txtvers=1"}, {"svc=a", "id=b", "a=c:1", "ttl=x"}, {"svc=a", "id=b#x=1"}} {
		if _, err := Decode(strs); err == nil {
			t.Errorf("Decode(%q) accepted", strs)
		}
	}
}
