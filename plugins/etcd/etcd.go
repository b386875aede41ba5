// Package etcd adds the etcd registry to the plugins a micro service can
// choose by flag: import it for its side effect,
//
//	import _ "github.com/microgrpc/microgrpc/plugins/etcd"
//
// and --registry=etcd --registry_address=10.0.0.5:2379 (or MICRO_REGISTRY
// and MICRO_REGISTRY_ADDRESS) select it. It is not in every service because
// the etcd client costs about 13 MB of binary and 2 MiB of memory at start.
package etcd

import (
	"github.com/microgrpc/microgrpc/plugins"
	"github.com/microgrpc/microgrpc/plugins/builtin"
	"github.com/microgrpc/microgrpc/resolver"
	"github.com/microgrpc/microgrpc/resolver/etcd"
)

func init() {
	// The addresses are etcd's endpoints; none means
	// $MICRO_REGISTRY_ADDRESS or 127.0.0.1:2379.
	plugins.RegisterRegistry(builtin.RegistryEtcd, func(addrs []string) (resolver.Registry, error) {
		return etcd.NewRegistry(etcd.WithEndpoints(addrs...))
	})
}
