package mdns

import (
	grpcresolver "google.golang.org/grpc/resolver"

	"github.com/microgrpc/microgrpc/resolver"
	"github.com/microgrpc/microgrpc/resolver/internal/shared"
)

// Scheme is the gRPC scheme this package registers.
const Scheme = "mdns"

func init() {
	// One process-wide registry (interfaces from $MICRO_MDNS_INTERFACES).
	grpcresolver.Register(&shared.Builder{
		SchemeName: Scheme,
		Key:        func(grpcresolver.Target) string { return "" },
		Open:       func(string) (shared.Registry, error) { return NewRegistry() },
	})
}

// NewBuilder returns a gRPC resolver builder over reg for the scheme
// "mdns", for use with grpc.WithResolvers.
func NewBuilder(reg *Registry, opts ...resolver.BuilderOption) grpcresolver.Builder {
	return resolver.NewBuilder(reg, append([]resolver.BuilderOption{resolver.WithScheme(Scheme)}, opts...)...)
}
