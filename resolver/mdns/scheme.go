package mdns

import (
	"sync"

	grpcresolver "google.golang.org/grpc/resolver"

	"github.com/microgrpc/microgrpc/resolver"
)

// Scheme is the gRPC scheme this package registers.
const Scheme = "mdns"

func init() {
	grpcresolver.Register(&schemeBuilder{})
}

// NewBuilder returns a gRPC resolver builder over reg for the scheme
// "mdns", for use with grpc.WithResolvers.
func NewBuilder(reg *Registry, opts ...resolver.BuilderOption) grpcresolver.Builder {
	return resolver.NewBuilder(reg, append([]resolver.BuilderOption{resolver.WithScheme(Scheme)}, opts...)...)
}

// schemeBuilder is the process-wide "mdns" scheme: one registry, made on
// first use (interfaces from $MICRO_MDNS_INTERFACES) and closed with the
// last resolver.
type schemeBuilder struct {
	mu   sync.Mutex
	reg  *Registry
	refs int
}

func (b *schemeBuilder) Scheme() string { return Scheme }

func (b *schemeBuilder) Build(t grpcresolver.Target, cc grpcresolver.ClientConn, opts grpcresolver.BuildOptions) (grpcresolver.Resolver, error) {
	if _, err := resolver.ServiceFromTarget(t); err != nil {
		return nil, err
	}
	b.mu.Lock()
	if b.reg == nil {
		reg, err := NewRegistry()
		if err != nil {
			b.mu.Unlock()
			return nil, err
		}
		b.reg = reg
	}
	b.refs++
	reg := b.reg
	b.mu.Unlock()
	r, err := NewBuilder(reg).Build(t, cc, opts)
	if err != nil {
		b.release()
		return nil, err
	}
	return &sharedResolver{Resolver: r, release: b.release}, nil
}

func (b *schemeBuilder) release() {
	b.mu.Lock()
	b.refs--
	var last *Registry
	if b.refs == 0 {
		last, b.reg = b.reg, nil
	}
	b.mu.Unlock()
	if last != nil {
		last.Close()
	}
}

type sharedResolver struct {
	grpcresolver.Resolver
	once    sync.Once
	release func()
}

func (r *sharedResolver) Close() {
	r.Resolver.Close()
	r.once.Do(r.release)
}
