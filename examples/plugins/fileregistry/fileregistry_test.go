package fileregistry_test

import (
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/microgrpc/microgrpc/examples/plugins/fileregistry"
	"github.com/microgrpc/microgrpc/resolver"
	"github.com/microgrpc/microgrpc/resolver/registrytest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// A plugin proves it keeps the registry contract with the kit, as any
// third-party registry can: each subtest gets a directory of its own, and
// a registration lives its TTL from the last Register, like go-micro's
// heartbeats.
func TestConformance(t *testing.T) {
	registrytest.Run(t, func(t *testing.T) resolver.Registry {
		r, err := fileregistry.New(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		return r
	}, registrytest.WithTTL(300*time.Millisecond))
}
