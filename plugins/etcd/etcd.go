// Package etcd adds the etcd registry to the plugins a micro service can
// choose by flag: import it for its side effect,
//
//	import _ "github.com/microgrpc/microgrpc/plugins/etcd"
//
// and --registry=etcd --registry_address=10.0.0.5:2379 (or MICRO_REGISTRY
// and MICRO_REGISTRY_ADDRESS) select it. An https:// address turns TLS on,
// verified with the service's CA (micro.WithTLS) and, with mutual TLS,
// showing the service's certificate. It is not in every service because
// the etcd client costs about 13 MB of binary and 2 MiB of memory at start.
package etcd

import (
	"crypto/tls"
	"os"
	"strings"

	"github.com/microgrpc/microgrpc/plugins"
	"github.com/microgrpc/microgrpc/plugins/builtin"
	"github.com/microgrpc/microgrpc/resolver"
	"github.com/microgrpc/microgrpc/resolver/etcd"
)

func init() {
	// The addresses are etcd's endpoints; none means
	// $MICRO_REGISTRY_ADDRESS or 127.0.0.1:2379.
	plugins.RegisterRegistry(builtin.RegistryEtcd, func(o plugins.RegistryOptions) (resolver.Registry, error) {
		addrs := o.Addrs
		if len(addrs) == 0 {
			addrs = etcd.EndpointsFromEnv(os.LookupEnv)
		}
		opts := []etcd.Option{etcd.WithEndpoints(addrs...)}
		for _, a := range addrs {
			if strings.HasPrefix(a, "https://") {
				// etcd with TLS: verified with the service's CA (and shown
				// its certificate), else with the system's roots.
				cfg := o.TLS
				if cfg == nil {
					cfg = &tls.Config{MinVersion: tls.VersionTLS12}
				}
				opts = append(opts, etcd.WithTLS(cfg))
				if o.Credentials != nil {
					// They follow a rotated CA; cfg keeps the one of the start.
					opts = append(opts, etcd.WithTransportCredentials(o.Credentials))
				}
				break
			}
		}
		return etcd.NewRegistry(opts...)
	})
}
