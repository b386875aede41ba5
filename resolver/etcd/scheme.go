package etcd

import (
	"os"
	"strings"
	"sync"

	grpcresolver "google.golang.org/grpc/resolver"

	"github.com/microgrpc/microgrpc/resolver"
)

// Scheme is the gRPC scheme this package registers.
const Scheme = "etcd"

func init() {
	grpcresolver.Register(&schemeBuilder{shared: map[string]*sharedRegistry{}})
}

// NewBuilder returns a gRPC resolver builder over reg for the scheme
// "etcd", for use with grpc.WithResolvers.
func NewBuilder(reg *Registry, opts ...resolver.BuilderOption) grpcresolver.Builder {
	return resolver.NewBuilder(reg, append([]resolver.BuilderOption{resolver.WithScheme(Scheme)}, opts...)...)
}

// schemeBuilder is the process-wide "etcd" scheme: it makes one registry
// per set of endpoints on first use and closes it with the last resolver.
type schemeBuilder struct {
	mu     sync.Mutex
	shared map[string]*sharedRegistry
}

type sharedRegistry struct {
	reg  *Registry
	refs int
}

func (b *schemeBuilder) Scheme() string { return Scheme }

func (b *schemeBuilder) Build(t grpcresolver.Target, cc grpcresolver.ClientConn, opts grpcresolver.BuildOptions) (grpcresolver.Resolver, error) {
	if _, err := resolver.ServiceFromTarget(t); err != nil {
		return nil, err
	}
	eps := EndpointsFromEnv(os.LookupEnv)
	if t.URL.Host != "" {
		eps = strings.Split(t.URL.Host, ",")
	}
	if len(eps) == 0 {
		eps = []string{DefaultEndpoint}
	}
	key := strings.Join(eps, ",")
	b.mu.Lock()
	sh, ok := b.shared[key]
	if !ok {
		reg, err := NewRegistry(WithEndpoints(eps...))
		if err != nil {
			b.mu.Unlock()
			return nil, err
		}
		sh = &sharedRegistry{reg: reg}
		b.shared[key] = sh
	}
	sh.refs++
	b.mu.Unlock()
	r, err := NewBuilder(sh.reg).Build(t, cc, opts)
	if err != nil {
		b.release(key)
		return nil, err
	}
	return &sharedResolver{Resolver: r, release: func() { b.release(key) }}, nil
}

func (b *schemeBuilder) release(key string) {
	b.mu.Lock()
	sh := b.shared[key]
	sh.refs--
	last := sh.refs == 0
	if last {
		delete(b.shared, key)
	}
	b.mu.Unlock()
	if last {
		sh.reg.Close()
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
