package direct

import (
	"errors"

	"github.com/microgrpc/microgrpc/broker"
	"github.com/microgrpc/microgrpc/plugins"
)

// The broker registers itself as the http plugin: a program that imports
// this package (micro/pubsub does) can choose it by name, and it is the
// default.
func init() { plugins.RegisterBroker(Name, fromPlugin) }

// fromPlugin makes the broker from what a service hands a plugin: its
// registry, its TLS and token, and its own gRPC server while that does
// not serve yet. The address, if any, is where a server of the broker's
// own listens when it needs one.
func fromPlugin(o plugins.BrokerOptions) (broker.Broker, error) {
	if o.Registry == nil {
		return nil, errors.New("the http broker needs the service's registry")
	}
	opts := []Option{WithRegistry(o.Registry), WithToken(o.Token), WithLogger(o.Logger)}
	if o.InsecureToken {
		opts = append(opts, WithInsecureToken())
	}
	if len(o.Addrs) > 0 {
		opts = append(opts, WithAddress(o.Addrs[0]))
	}
	if o.ServerTLS != nil || o.ClientTLS != nil {
		opts = append(opts, WithTLS(o.ServerTLS, o.ClientTLS, o.MutualTLS))
	}
	if o.Server != nil {
		opts = append(opts, WithServer(o.Server, o.Advertise))
	}
	return NewBroker(opts...), nil
}
