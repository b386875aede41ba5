// Package builtin registers the implementations every micro service has
// with package plugins: registries mdns (the default) and memory, brokers
// http (the default) and memory. Package micro imports it.
//
// The others are a blank import away, so that a service pays (binary
// size, memory at start) only for what it can use: plugins/etcd adds
// --registry=etcd, plugins/nats adds --broker=nats and --broker=jetstream,
// and plugins/all adds every one.
package builtin

import (
	"errors"

	"github.com/microgrpc/microgrpc/broker"
	httpbroker "github.com/microgrpc/microgrpc/broker/http"
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
	// http: the address, if any, is where its subscriber endpoint listens.
	plugins.RegisterBroker(BrokerHTTP, func(o plugins.BrokerOptions) (broker.Broker, error) {
		if o.Registry == nil {
			return nil, errors.New("the http broker needs the service's registry")
		}
		opts := []httpbroker.Option{httpbroker.WithRegistry(o.Registry), httpbroker.WithToken(o.Token)}
		if len(o.Addrs) > 0 {
			opts = append(opts, httpbroker.WithAddress(o.Addrs[0]))
		}
		if o.ServerTLS != nil || o.ClientTLS != nil {
			opts = append(opts, httpbroker.WithTLS(o.ServerTLS, o.ClientTLS))
		}
		return httpbroker.NewBroker(opts...), nil
	})
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
