package mdns_test

import (
	"testing"

	"github.com/microgrpc/microgrpc/resolver"
	"github.com/microgrpc/microgrpc/resolver/registrytest"
)

// The registry inside the package's private network namespace (TestMain),
// where every subtest's registry shares the loopback link with the others.
func TestConformance(t *testing.T) {
	registrytest.Run(t, func(t *testing.T) resolver.Registry { return newRegistry(t) },
		// A registry learns even its own nodes from the network.
		registrytest.WithEventualConsistency(),
		// TXT records carry endpoints' names and streaming flags only.
		registrytest.WithoutEndpointMetadata(),
		// No WithTTL: a node expires only when its responder stops without
		// a goodbye, which only a process that dies can do (Close says
		// goodbye); TestKilledNodeExpiresWithinTTL kills one.
	)
}
