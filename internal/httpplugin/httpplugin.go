package httpplugin

import (
	"errors"
	"sync/atomic"

	"github.com/microgrpc/microgrpc/broker"
	httpbroker "github.com/microgrpc/microgrpc/broker/http"
	"github.com/microgrpc/microgrpc/plugins"
)

// linked is New once Link has run.
var linked atomic.Pointer[plugins.BrokerFactory]

// Link makes Factory work.
func Link() {
	if linked.Load() == nil {
		f := plugins.BrokerFactory(New)
		linked.Store(&f)
	}
}

// ErrNotLinked is Factory's error before Link.
var ErrNotLinked = errors.New(`the http broker is not linked into this program: a micro service links it when it publishes or subscribes; ` +
	`to make it by name without one, add import _ "github.com/microgrpc/microgrpc/plugins/all"`)

// Factory is the http plugin as plugins/builtin registers it: New once Link
// has run, ErrNotLinked before.
func Factory(o plugins.BrokerOptions) (broker.Broker, error) {
	f := linked.Load()
	if f == nil {
		return nil, ErrNotLinked
	}
	return (*f)(o)
}

// New makes an http broker: it finds its peers through the service's
// registry, and the address, if any, is where its subscriber endpoint
// listens.
func New(o plugins.BrokerOptions) (broker.Broker, error) {
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
}
