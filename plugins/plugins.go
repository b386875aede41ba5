// Package plugins is the catalogue of named factories microgrpc picks
// implementations from at run time, go-micro style: `--registry=etcd`,
// `MICRO_BROKER=nats`.
//
// Each kind has its own table. Built-in implementations are added by
// package plugins/builtin, which micro imports; a third-party plugin adds
// itself from an init function, so using it is one blank import away:
//
//	import _ "example.com/consul" // calls plugins.RegisterRegistry("consul", ...)
//
// and then `--registry=consul`. Register* must only be called during
// initialization (from init functions), and panics on a duplicate name: two
// plugins claiming one name is a programming error.
package plugins

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/microgrpc/microgrpc/broker"
	"github.com/microgrpc/microgrpc/resolver"
)

// ErrUnknownPlugin is wrapped by the error for a name nothing registered;
// the error lists the names that are known.
var ErrUnknownPlugin = errors.New("plugins: unknown plugin")

// RegistryFactory makes a registry from what the service knows.
type RegistryFactory func(o RegistryOptions) (resolver.Registry, error)

// RegistryOptions is what a service hands a registry plugin.
type RegistryOptions struct {
	// Addrs are the addresses given with --registry_address /
	// MICRO_REGISTRY_ADDRESS (empty for the plugin's own default or
	// environment).
	Addrs []string
	// TLS is the service's client TLS (micro.WithTLS), nil when it is off.
	// A registry whose addresses ask for TLS (etcd at https://...) verifies
	// the server with it and presents the service's certificate; without
	// it, the system's roots.
	TLS *tls.Config
	// Credentials are the same TLS as gRPC transport credentials that
	// follow the service's files (a rotated CA included), nil when TLS is
	// off: a registry that talks gRPC (etcd) dials with them.
	Credentials credentials.TransportCredentials
}

// BrokerFactory makes a broker from what the service knows.
type BrokerFactory func(o BrokerOptions) (broker.Broker, error)

// BrokerOptions is what a service hands a broker plugin.
type BrokerOptions struct {
	// Addrs come from --broker_address / MICRO_BROKER_ADDRESS (empty for
	// the plugin's own default or environment).
	Addrs []string
	// Registry is the service's registry, for brokers that find their
	// peers through it (the http broker does).
	Registry resolver.Registry
	// ServerTLS and ClientTLS are the service's TLS (micro.WithTLS), nil
	// when it is off: a broker that serves uses ServerTLS (with a CA it
	// requires client certificates), connections it makes use ClientTLS.
	// A broker of a server with TLS of its own (nats at tls://...) verifies
	// it with ClientTLS.
	ServerTLS, ClientTLS *tls.Config
	// MutualTLS says that ServerTLS requires client certificates (a CA
	// file was given): publishers are authenticated by them.
	MutualTLS bool
	// Token is a shared secret publishers must present when the transport
	// does not authenticate them (--broker_token, MICRO_BROKER_TOKEN).
	Token string
	// InsecureToken lets the token travel over connections without TLS
	// (--broker_insecure_token).
	InsecureToken bool
	// Server is the service's own gRPC server while it is not serving yet:
	// a broker that receives deliveries (http) registers its service on
	// it instead of serving a port of its own. Advertise returns the
	// service's address once it serves. Both are nil when the service
	// serves already, or for a broker made without one.
	Server    grpc.ServiceRegistrar
	Advertise func() string
	// Logger is the service's logger; nil: slog.Default().
	Logger *slog.Logger
	// AckWait, when not 0, is how long a broker that redelivers (jetstream)
	// waits for a delivery's answer before delivering it again
	// (--broker_ack_wait, MICRO_BROKER_ACK_WAIT).
	AckWait time.Duration
	// Replicas, when not 0, is how many copies a broker that stores
	// messages (jetstream) keeps of the streams it makes
	// (--broker_replicas, MICRO_BROKER_REPLICAS).
	Replicas int
}

type table[F any] struct {
	kind string
	// hints name the package that registers a plugin of this module that
	// a program may not have linked.
	hints map[string]string
	mu    sync.RWMutex
	m     map[string]F
}

func (t *table[F]) register(name string, f F) {
	if name == "" || strings.ContainsAny(name, " ,=") {
		panic(fmt.Sprintf("plugins: invalid %s plugin name %q", t.kind, name))
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, dup := t.m[name]; dup {
		panic(fmt.Sprintf("plugins: %s plugin %q registered twice", t.kind, name))
	}
	t.m[name] = f
}

func (t *table[F]) get(name string) (F, error) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	f, ok := t.m[name]
	if !ok {
		var zero F
		hint := ""
		if pkg, ok := t.hints[name]; ok {
			hint = fmt.Sprintf("; %q is in %s: add import _ %q to the program", name, pkg, pkg)
		}
		return zero, fmt.Errorf("%w: no %s plugin named %q (known: %s)%s", ErrUnknownPlugin, t.kind, name, strings.Join(t.namesLocked(), ", "), hint)
	}
	return f, nil
}

func (t *table[F]) names() []string {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.namesLocked()
}

// namesLocked lists the registered names. Caller must hold t.mu.
func (t *table[F]) namesLocked() []string { return slices.Sorted(maps.Keys(t.m)) }

var (
	registries = &table[RegistryFactory]{kind: "registry", m: map[string]RegistryFactory{},
		hints: map[string]string{"etcd": "github.com/microgrpc/microgrpc/plugins/etcd"}}
	brokers = &table[BrokerFactory]{kind: "broker", m: map[string]BrokerFactory{},
		hints: map[string]string{"nats": "github.com/microgrpc/microgrpc/plugins/nats", "jetstream": "github.com/microgrpc/microgrpc/plugins/nats",
			"http": "github.com/microgrpc/microgrpc/micro/pubsub"}}
)

// RegisterRegistry adds a registry plugin under name.
//
// NOTE: this must only be called during initialization time (i.e. in an
// init() function), and panics when name is taken.
func RegisterRegistry(name string, f RegistryFactory) { registries.register(name, f) }

// NewRegistry makes a registry with the plugin called name. An unknown name
// gives an error wrapping ErrUnknownPlugin that lists the known names.
func NewRegistry(name string, o RegistryOptions) (resolver.Registry, error) {
	f, err := registries.get(name)
	if err != nil {
		return nil, err
	}
	r, err := f(o)
	if err != nil {
		return nil, fmt.Errorf("plugins: registry %q: %w", name, err)
	}
	return r, nil
}

// Registries lists the registry plugin names.
func Registries() []string { return registries.names() }

// RegisterBroker adds a broker plugin under name.
//
// NOTE: this must only be called during initialization time (i.e. in an
// init() function), and panics when name is taken.
func RegisterBroker(name string, f BrokerFactory) { brokers.register(name, f) }

// NewBroker makes a broker with the plugin called name.
func NewBroker(name string, o BrokerOptions) (broker.Broker, error) {
	f, err := brokers.get(name)
	if err != nil {
		return nil, err
	}
	b, err := f(o)
	if err != nil {
		return nil, fmt.Errorf("plugins: broker %q: %w", name, err)
	}
	return b, nil
}

// LookupBroker returns the factory registered under name without calling
// it, or the error NewBroker would give for the name: to check a name the
// operator gave before the broker is needed.
func LookupBroker(name string) (BrokerFactory, error) { return brokers.get(name) }

// Brokers lists the broker plugin names.
func Brokers() []string { return brokers.names() }
