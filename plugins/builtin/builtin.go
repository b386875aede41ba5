// Package builtin registers the implementations every micro service has
// with package plugins: registries mdns (the default) and memory, and the
// memory broker. Package micro imports it.
//
// The others are a blank import away, so that a service pays (binary
// size, memory at start) only for what it can use: plugins/etcd adds
// --registry=etcd, plugins/nats adds --broker=nats and --broker=jetstream,
// and plugins/all adds every one.
//
// The default broker, http, is registered by its own package,
// broker/direct, which micro/pubsub imports: a service that does not use
// pub/sub does not link it.
package builtin

import (
	"github.com/microgrpc/microgrpc/broker"
	memorybroker "github.com/microgrpc/microgrpc/broker/memory"
	"github.com/microgrpc/microgrpc/plugins"
	"github.com/microgrpc/microgrpc/resolver"
	"github.com/microgrpc/microgrpc/resolver/mdns"
	"github.com/microgrpc/microgrpc/resolver/memory"
)

// The names of the built-in plugins (etcd, nats and jetstream are
// registered by plugins/etcd and plugins/nats).
const (
	RegistryMemory  = "memory"
	RegistryMDNS    = "mdns"
	RegistryEtcd    = "etcd"
	BrokerHTTP      = "http"
	BrokerNATS      = "nats"
	BrokerJetStream = "jetstream"
	BrokerMemory    = "memory"

	// DefaultRegistry is used when nothing chooses one: zero
	// configuration on one host or LAN.
	DefaultRegistry = RegistryMDNS
	// DefaultBroker is used when nothing chooses one.
	DefaultBroker = BrokerHTTP
)

func init() {
	// memory: in-process; each service gets its own unless one is shared
	// with micro.WithBroker.
	plugins.RegisterBroker(BrokerMemory, func(plugins.BrokerOptions) (broker.Broker, error) {
		return memorybroker.NewBroker(), nil
	})

	// A memory registry lives in one process: addresses make no sense for it.
	plugins.RegisterRegistry(RegistryMemory, func(plugins.RegistryOptions) (resolver.Registry, error) {
		return memory.NewRegistry(), nil
	})
	// mdns: the addresses are interface names; none means
	// $MICRO_MDNS_INTERFACES or every up, multicast-capable interface.
	plugins.RegisterRegistry(RegistryMDNS, func(o plugins.RegistryOptions) (resolver.Registry, error) {
		return mdns.NewRegistry(mdns.WithInterfaces(o.Addrs...))
	})
}
