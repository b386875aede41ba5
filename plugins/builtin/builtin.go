// Package builtin registers the implementations every micro service has
// with package plugins: registries mdns (the default) and memory, brokers
// http (the default) and memory. Package micro imports it.
//
// The others are a blank import away, so that a service pays (binary
// size, memory at start) only for what it can use: plugins/etcd adds
// --registry=etcd, plugins/nats adds --broker=nats and --broker=jetstream,
// and plugins/all adds every one.
//
// The http broker's name is registered here, but its code is linked only
// into a program that can use it: one whose micro service publishes or
// subscribes (or asks for its Broker), or one that imports plugins/all. In
// any other program plugins.NewBroker("http", ...) is an error that says
// so; a service that never uses pub/sub does not carry an HTTP client and
// server for it.
package builtin

import (
	"github.com/microgrpc/microgrpc/broker"
	memorybroker "github.com/microgrpc/microgrpc/broker/memory"
	"github.com/microgrpc/microgrpc/internal/httpplugin"
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
	// http: see the package comment.
	plugins.RegisterBroker(BrokerHTTP, httpplugin.Factory)
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
