package resolver_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/microgrpc/microgrpc/resolver"
	"github.com/microgrpc/microgrpc/resolver/memory"
)

// Services groups the followed nodes by version, as GetService does, and
// follows deregistrations.
func TestFollowerServicesByVersion(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	reg := memory.NewRegistry()
	reg.Register(ctx, &resolver.Service{Name: "greeter", Version: "v1", Metadata: map[string]string{"team": "a"}, Nodes: []resolver.Node{{ID: "b", Address: "127.0.0.1:2"}, {ID: "a", Address: "127.0.0.1:1"}}})
	reg.Register(ctx, &resolver.Service{Name: "greeter", Version: "v2", Nodes: []resolver.Node{{ID: "c", Address: "127.0.0.1:3", Metadata: map[string]string{"zone": "z"}}}})
	f := resolver.Follow(reg, "greeter")
	defer f.Stop()
	if err := f.Ready(ctx); err != nil {
		t.Fatal(err)
	}
	want := []*resolver.Service{
		{Name: "greeter", Version: "v1", Metadata: map[string]string{"team": "a"}, Nodes: []resolver.Node{{ID: "a", Address: "127.0.0.1:1"}, {ID: "b", Address: "127.0.0.1:2"}}},
		{Name: "greeter", Version: "v2", Nodes: []resolver.Node{{ID: "c", Address: "127.0.0.1:3", Metadata: map[string]string{"zone": "z"}}}},
	}
	if diff := cmp.Diff(f.Services(), want); diff != "" {
		t.Fatalf("Services() (-got +want):\n%s", diff)
	}
	reg.Deregister(ctx, &resolver.Service{Name: "greeter", Version: "v2", Nodes: []resolver.Node{{ID: "c", Address: "127.0.0.1:3"}}})
	for len(f.Services()) != 1 {
		select {
		case <-f.Changed():
		case <-ctx.Done():
			t.Fatalf("v2 still followed after its node left: %v", f.Services())
		}
	}
	if diff := cmp.Diff(f.Services(), want[:1]); diff != "" {
		t.Fatalf("Services() after deregistering v2 (-got +want):\n%s", diff)
	}
}
