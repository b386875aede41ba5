// Package builtin registers microgrpc's own implementations with package
// plugins: registries mdns, etcd and memory; brokers http, nats, jetstream
// and memory.
// Package micro imports it, so `--registry=etcd` works out of the box, as
// go-micro promised; programs that do not use micro import only what they
// need.
package builtin

import (
	"errors"
	"os"

	"github.com/microgrpc/microgrpc/broker"
	httpbroker "github.com/microgrpc/microgrpc/broker/http"
	jsbroker "github.com/microgrpc/microgrpc/broker/jetstream"
	memorybroker "github.com/microgrpc/microgrpc/broker/memory"
	natsbroker "github.com/microgrpc/microgrpc/broker/nats"
	"github.com/microgrpc/microgrpc/plugins"
	"github.com/microgrpc/microgrpc/resolver"
	"github.com/microgrpc/microgrpc/resolver/etcd"
	"github.com/microgrpc/microgrpc/resolver/mdns"
	"github.com/microgrpc/microgrpc/resolver/memory"
)

// The names of the built-in plugins.
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
	plugins.RegisterBroker(BrokerHTTP, func(addrs []string, reg resolver.Registry) (broker.Broker, error) {
		if reg == nil {
			return nil, errors.New("the http broker needs the service's registry")
		}
		opts := []httpbroker.Option{httpbroker.WithRegistry(reg)}
		if len(addrs) > 0 {
			opts = append(opts, httpbroker.WithAddress(addrs[0]))
		}
		return httpbroker.NewBroker(opts...), nil
	})
	// nats: the addresses are server URLs; none means
	// $MICRO_BROKER_ADDRESS or nats://127.0.0.1:4222.
	plugins.RegisterBroker(BrokerNATS, func(addrs []string, _ resolver.Registry) (broker.Broker, error) {
		if len(addrs) == 0 {
			addrs = natsbroker.URLsFromEnv(os.LookupEnv)
		}
		var opts []natsbroker.Option
		if len(addrs) > 0 {
			opts = append(opts, natsbroker.WithURLs(addrs...))
		}
		return natsbroker.NewBroker(opts...), nil
	})
	// jetstream: NATS JetStream, durable; the addresses are server URLs,
	// as for nats.
	plugins.RegisterBroker(BrokerJetStream, func(addrs []string, _ resolver.Registry) (broker.Broker, error) {
		if len(addrs) == 0 {
			addrs = natsbroker.URLsFromEnv(os.LookupEnv)
		}
		var opts []jsbroker.Option
		if len(addrs) > 0 {
			opts = append(opts, jsbroker.WithURLs(addrs...))
		}
		return jsbroker.NewBroker(opts...), nil
	})
	// memory: in-process; each service gets its own unless one is shared
	// with micro.WithBroker.
	plugins.RegisterBroker(BrokerMemory, func([]string, resolver.Registry) (broker.Broker, error) {
		return memorybroker.NewBroker(), nil
	})

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
