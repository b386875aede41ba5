// Package nats adds the NATS brokers to the plugins a micro service can
// choose by flag: import it for its side effect,
//
//	import _ "github.com/microgrpc/microgrpc/plugins/nats"
//
// and --broker=nats (NATS core) or --broker=jetstream (durable), with
// --broker_address=nats://10.0.0.7:4222 (or MICRO_BROKER and
// MICRO_BROKER_ADDRESS), select them. With tls:// URLs and the service's
// TLS on (micro.WithTLS), the server is verified with the service's CA and
// shown its certificate; --broker_token is sent as the NATS token.
package nats

import (
	"crypto/tls"
	"os"
	"strings"

	"github.com/microgrpc/microgrpc/broker"
	jsbroker "github.com/microgrpc/microgrpc/broker/jetstream"
	natsbroker "github.com/microgrpc/microgrpc/broker/nats"
	"github.com/microgrpc/microgrpc/plugins"
	"github.com/microgrpc/microgrpc/plugins/builtin"
)

func init() {
	// nats: the addresses are server URLs; none means
	// $MICRO_BROKER_ADDRESS or nats://127.0.0.1:4222.
	plugins.RegisterBroker(builtin.BrokerNATS, func(o plugins.BrokerOptions) (broker.Broker, error) {
		return natsbroker.NewBroker(options(o, natsbroker.WithURLs, natsbroker.WithTLS, natsbroker.WithToken)...), nil
	})
	// jetstream: NATS JetStream, durable; the addresses are server URLs,
	// as for nats; --broker_ack_wait and --broker_replicas apply to it.
	plugins.RegisterBroker(builtin.BrokerJetStream, func(o plugins.BrokerOptions) (broker.Broker, error) {
		opts := options(o, jsbroker.WithURLs, jsbroker.WithTLS, jsbroker.WithToken)
		if o.AckWait > 0 {
			opts = append(opts, jsbroker.WithAckWait(o.AckWait))
		}
		if o.Replicas > 0 {
			opts = append(opts, jsbroker.WithReplicas(o.Replicas))
		}
		return jsbroker.NewBroker(opts...), nil
	})
}

// options are the connection options both brokers take, in the option
// type of each.
func options[O any](o plugins.BrokerOptions, withURLs func(...string) O, withTLS func(*tls.Config) O, withToken func(string) O) []O {
	addrs := urls(o)
	var opts []O
	if len(addrs) > 0 {
		opts = append(opts, withURLs(addrs...))
	}
	if useTLS(addrs, o) {
		opts = append(opts, withTLS(o.ClientTLS))
	}
	if o.Token != "" {
		opts = append(opts, withToken(o.Token))
	}
	return opts
}

// urls are the server URLs: the service's, else $MICRO_BROKER_ADDRESS.
func urls(o plugins.BrokerOptions) []string {
	if len(o.Addrs) > 0 {
		return o.Addrs
	}
	return natsbroker.URLsFromEnv(os.LookupEnv)
}

// useTLS reports whether to hand the service's TLS to nats.go: when a URL
// asks for TLS (tls://), the server is verified with the service's CA and
// shown its certificate, unless the service has no TLS of its own (then
// nats.go uses the system's roots).
func useTLS(addrs []string, o plugins.BrokerOptions) bool {
	if o.ClientTLS == nil {
		return false
	}
	for _, a := range addrs {
		if strings.HasPrefix(a, "tls://") {
			return true
		}
	}
	return false
}
