// Package builtin registers microgrpc's own implementations with package
// plugins: registries mdns, etcd and memory; brokers http, nats and memory.
// Package micro imports it, so `--registry=etcd` works out of the box, as
// go-micro promised; programs that do not use micro import only what they
// need.
package builtin

import (
	"github.com/microgrpc/microgrpc/plugins"
	"github.com/microgrpc/microgrpc/resolver"
	"github.com/microgrpc/microgrpc/resolver/etcd"
	"github.com/microgrpc/microgrpc/resolver/mdns"
	"github.com/microgrpc/microgrpc/resolver/memory"
)

// The names of the built-in plugins.
const (
	RegistryMemory = "memory"
	RegistryMDNS   = "mdns"
	RegistryEtcd   = "etcd"
	BrokerHTTP     = "http"
	BrokerNATS     = "nats"
	BrokerMemory   = "memory"

	// DefaultRegistry is used when nothing chooses one: zero
	// configuration on one host or LAN.
	DefaultRegistry = RegistryMDNS
	// DefaultBroker is used when nothing chooses one.
	DefaultBroker = BrokerHTTP
)

func init() {
	// A memory registry lives in one process: addresses make no sense for it.
	plugins.RegisterRegistry(RegistryMemory, func([]string) (resolver.Registry, error) {
		return memory.NewRegistry(), nil
	})
	// mdns: the addresses are interface names; none means
	// $MICRO_MDNS_INTERFACES or every up, multicast-capable interface.
	plugins.RegisterRegistry(RegistryMDNS, func(addrs []string) (resolver.Registry, error) {
		return mdns.NewRegistry(mdns.WithInterfaces(addrs...))
	})
	// etcd: the addresses are its endpoints; none means
	// $MICRO_REGISTRY_ADDRESS or 127.0.0.1:2379.
	plugins.RegisterRegistry(RegistryEtcd, func(addrs []string) (resolver.Registry, error) {
		return etcd.NewRegistry(etcd.WithEndpoints(addrs...))
	})
}
