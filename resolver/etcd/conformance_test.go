package etcd_test

import (
	"testing"
	"time"

	"github.com/microgrpc/microgrpc/resolver"
	"github.com/microgrpc/microgrpc/resolver/etcd"
	"github.com/microgrpc/microgrpc/resolver/registrytest"
)

// The registry on the package's etcd, each subtest under a prefix of its
// own. Leases count whole seconds, and the registry keeps them alive
// itself: a registration expires only once its registry is gone, which
// Close stands in for (it stops the keepalives and deregisters nothing).
func TestConformance(t *testing.T) {
	registrytest.Run(t, func(t *testing.T) resolver.Registry { return newRegistry(t, server.Endpoint()) },
		registrytest.WithTTL(time.Second),
		registrytest.WithKeepAlive(func(r resolver.Registry) { r.(*etcd.Registry).Close() }))
}
