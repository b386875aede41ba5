package memory_test

import (
	"testing"
	"time"

	"github.com/microgrpc/microgrpc/resolver"
	"github.com/microgrpc/microgrpc/resolver/memory"
	"github.com/microgrpc/microgrpc/resolver/registrytest"
)

// The registry keeps the whole contract: reads see writes at once, and a
// registration lives its TTL from the last Register.
func TestConformance(t *testing.T) {
	registrytest.Run(t, func(*testing.T) resolver.Registry { return memory.NewRegistry() },
		registrytest.WithTTL(300*time.Millisecond))
}
