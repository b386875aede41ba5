package etcd

import (
	"os"
	"strings"

	grpcresolver "google.golang.org/grpc/resolver"

	"github.com/microgrpc/microgrpc/resolver"
	"github.com/microgrpc/microgrpc/resolver/internal/shared"
)

// Scheme is the gRPC scheme this package registers.
const Scheme = "etcd"

func init() {
	// One registry per set of endpoints: the target's authority
	// ("etcd://10.0.0.5:2379/greeter"), else $MICRO_REGISTRY_ADDRESS, else
	// 127.0.0.1:2379.
	grpcresolver.Register(&shared.Builder{
		SchemeName: Scheme,
		Key: func(t grpcresolver.Target) string {
			if t.URL.Host != "" {
				return t.URL.Host
			}
			if eps := EndpointsFromEnv(os.LookupEnv); len(eps) > 0 {
				return strings.Join(eps, ",")
			}
			return DefaultEndpoint
		},
		Open: func(key string) (shared.Registry, error) {
			return NewRegistry(WithEndpoints(strings.Split(key, ",")...))
		},
	})
}

// NewBuilder returns a gRPC resolver builder over reg for the scheme
// "etcd", for use with grpc.WithResolvers.
func NewBuilder(reg *Registry, opts ...resolver.BuilderOption) grpcresolver.Builder {
	return resolver.NewBuilder(reg, append([]resolver.BuilderOption{resolver.WithScheme(Scheme)}, opts...)...)
}
