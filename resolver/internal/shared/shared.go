// Package shared is the process-wide gRPC scheme behind resolver/etcd and
// resolver/mdns: one registry per configuration, made on the first Build
// that needs it and closed with the last resolver that used it, so that
// grpc.NewClient("etcd:///greeter") needs no setup and leaks nothing.
package shared

import (
	"io"
	"sync"

	grpcresolver "google.golang.org/grpc/resolver"

	"github.com/microgrpc/microgrpc/resolver"
)

// Registry is a registry the scheme can close.
type Registry interface {
	resolver.Registry
	io.Closer
}

// Builder is a gRPC resolver builder over shared registries.
type Builder struct {
	// SchemeName is the gRPC scheme.
	SchemeName string
	// Key names the registry configuration a target needs (e.g. etcd
	// endpoints); targets with the same key share a registry.
	Key func(grpcresolver.Target) string
	// Open makes the registry for a key.
	Open func(key string) (Registry, error)

	mu   sync.Mutex
	regs map[string]*entry
}

type entry struct {
	reg  Registry
	refs int
}

// Scheme returns SchemeName.
func (b *Builder) Scheme() string { return b.SchemeName }

// Build resolves t through the registry for its key.
func (b *Builder) Build(t grpcresolver.Target, cc grpcresolver.ClientConn, opts grpcresolver.BuildOptions) (grpcresolver.Resolver, error) {
	if _, err := resolver.ServiceFromTarget(t); err != nil {
		return nil, err
	}
	key := b.Key(t)
	b.mu.Lock()
	if b.regs == nil {
		b.regs = map[string]*entry{}
	}
	e, ok := b.regs[key]
	if !ok {
		reg, err := b.Open(key)
		if err != nil {
			b.mu.Unlock()
			return nil, err
		}
		e = &entry{reg: reg}
		b.regs[key] = e
	}
	e.refs++
	b.mu.Unlock()
	r, err := resolver.NewBuilder(e.reg, resolver.WithScheme(b.SchemeName)).Build(t, cc, opts)
	if err != nil {
		b.release(key)
		return nil, err
	}
	return &sharedResolver{Resolver: r, release: func() { b.release(key) }}, nil
}

func (b *Builder) release(key string) {
	b.mu.Lock()
	e := b.regs[key]
	e.refs--
	last := e.refs == 0
	if last {
		delete(b.regs, key)
	}
	b.mu.Unlock()
	if last {
		e.reg.Close()
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
