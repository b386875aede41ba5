// Package nats adds the NATS brokers to the plugins a micro service can
// choose by flag: import it for its side effect,
//
//	import _ "github.com/microgrpc/microgrpc/plugins/nats"
//
// and --broker=nats (NATS core) or --broker=jetstream (durable), with
// --broker_address=nats://10.0.0.7:4222 (or MICRO_BROKER and
// MICRO_BROKER_ADDRESS), select them.
package nats

import (
	"os"

	"github.com/microgrpc/microgrpc/broker"
	jsbroker "github.com/microgrpc/microgrpc/broker/jetstream"
	natsbroker "github.com/microgrpc/microgrpc/broker/nats"
	"github.com/microgrpc/microgrpc/plugins"
	"github.com/microgrpc/microgrpc/plugins/builtin"
	"github.com/microgrpc/microgrpc/resolver"
)

func init() {
	// nats: the addresses are server URLs; none means
	// $MICRO_BROKER_ADDRESS or nats://127.0.0.1:4222.
	plugins.RegisterBroker(builtin.BrokerNATS, func(addrs []string, _ resolver.Registry) (broker.Broker, error) {
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
	plugins.RegisterBroker(builtin.BrokerJetStream, func(addrs []string, _ resolver.Registry) (broker.Broker, error) {
		if len(addrs) == 0 {
			addrs = natsbroker.URLsFromEnv(os.LookupEnv)
		}
		var opts []jsbroker.Option
		if len(addrs) > 0 {
			opts = append(opts, jsbroker.WithURLs(addrs...))
		}
		return jsbroker.NewBroker(opts...), nil
	})
}
