package resolver_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/microgrpc/microgrpc/resolver"
)

// FuzzValidateName checks the registry contract's name rule, which every
// registry and the resolver apply to names from users and from the
// network: an error (ErrInvalidService) exactly for an empty name or one
// with '/', and a service with a valid name and node passes Validate.
func FuzzValidateName(f *testing.F) {
	for _, name := range []string{"greeter", "", "/", "a/b", "greeter.v1", "caf\u00e9", "\xff", "a\x00", " ", "..", strings.Repeat("n", 300)} {
		f.Add(name, "n1", "127.0.0.1:1")
	}
	f.Add("greeter", "", "127.0.0.1:1")
	f.Add("greeter", "a/b", "127.0.0.1:1")
	f.Add("greeter", "n1", "")
	f.Fuzz(func(t *testing.T, name, id, addr string) {
		err := resolver.ValidateName(name)
		if want := name != "" && !strings.Contains(name, "/"); (err == nil) != want {
			t.Fatalf("ValidateName(%q) = %v, want valid=%v", name, err, want)
		}
		if err != nil && !errors.Is(err, resolver.ErrInvalidService) {
			t.Fatalf("ValidateName(%q) = %v, want ErrInvalidService", name, err)
		}
		s := &resolver.Service{Name: name, Nodes: []resolver.Node{{ID: id, Address: addr}}}
		verr := s.Validate()
		if want := err == nil && id != "" && !strings.Contains(id, "/") && addr != ""; (verr == nil) != want {
			t.Fatalf("Validate(%q, node %q at %q) = %v, want valid=%v", name, id, addr, verr, want)
		}
		if verr != nil && !errors.Is(verr, resolver.ErrInvalidService) {
			t.Fatalf("Validate = %v, want ErrInvalidService", verr)
		}
		if verr == nil {
			if c := s.Clone(); c.Validate() != nil || c.Name != name || c.Nodes[0].ID != id || c.Nodes[0].Address != addr {
				t.Fatalf("Clone of a valid service: %+v", c)
			}
		}
	})
}
