package etcd

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/credentials"

	"github.com/microgrpc/microgrpc/internal/envconfig"
)

// Defaults.
const (
	DefaultPrefix      = "/micro/registry"
	DefaultEndpoint    = "127.0.0.1:2379"
	DefaultDialTimeout = 5 * time.Second
	// DefaultReadTimeout bounds a read (GetService, ListServices, the
	// first listing of a Watch) when the caller's context has no deadline,
	// so that an unreachable etcd is an error, not a wait.
	DefaultReadTimeout = 3 * time.Second
	// DefaultTTL is the lease TTL of a registration that has none.
	DefaultTTL = 30 * time.Second
	// MaxRetryBackoff caps the delay between attempts to re-register after
	// the lease or key was lost.
	MaxRetryBackoff = 10 * time.Second
)

// EnvAddress is the environment variable with comma-separated etcd
// endpoints, read when no endpoints are given.
const EnvAddress = "MICRO_REGISTRY_ADDRESS"

type options struct {
	endpoints      []string
	dialTimeout    time.Duration
	readTimeout    time.Duration
	username, pass string
	tls            *tls.Config
	creds          credentials.TransportCredentials
	prefix         string
	logger         *slog.Logger
	client         *clientv3.Client
	// wrapKV lets tests count requests.
	wrapKV func(clientv3.KV) clientv3.KV
}

func defaultOptions() options {
	return options{dialTimeout: DefaultDialTimeout, readTimeout: DefaultReadTimeout, prefix: DefaultPrefix, logger: slog.Default()}
}

// Option configures NewRegistry.
type Option func(*options)

// WithEndpoints sets the etcd endpoints ("host:port"); the default is
// $MICRO_REGISTRY_ADDRESS, else 127.0.0.1:2379.
func WithEndpoints(eps ...string) Option { return func(o *options) { o.endpoints = eps } }

// WithDialTimeout bounds connecting to etcd.
func WithDialTimeout(d time.Duration) Option { return func(o *options) { o.dialTimeout = d } }

// WithReadTimeout bounds reads whose context has no deadline (default
// DefaultReadTimeout).
func WithReadTimeout(d time.Duration) Option {
	return func(o *options) {
		if d > 0 {
			o.readTimeout = d
		}
	}
}

// WithAuth sets etcd's username and password.
func WithAuth(username, password string) Option {
	return func(o *options) { o.username, o.pass = username, password }
}

// WithTLS sets the TLS configuration for talking to etcd.
func WithTLS(c *tls.Config) Option { return func(o *options) { o.tls = c } }

// WithTransportCredentials sets the gRPC transport credentials of every
// connection to etcd, in place of the ones the etcd client makes of
// WithTLS's configuration (so give it only for https:// endpoints):
// credentials that take a new configuration per handshake follow a
// rotated CA.
func WithTransportCredentials(c credentials.TransportCredentials) Option {
	return func(o *options) { o.creds = c }
}

// WithPrefix sets the key prefix (default /micro/registry).
func WithPrefix(p string) Option { return func(o *options) { o.prefix = strings.TrimSuffix(p, "/") } }

// WithLogger sets the logger for lease losses and recoveries and skipped
// values.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) {
		if l != nil {
			o.logger = l
		}
	}
}

// WithClient uses an existing etcd client instead of dialing one; the
// registry does not close it.
func WithClient(c *clientv3.Client) Option { return func(o *options) { o.client = c } }

// EndpointsFromEnv returns the endpoints in $MICRO_REGISTRY_ADDRESS, or
// nil.
func EndpointsFromEnv(lookup func(string) (string, bool)) []string {
	v, _ := envconfig.RegistryAddress.Lookup(lookup)
	return envconfig.SplitList(v)
}

func (o *options) validate() error {
	if o.prefix == "" || !strings.HasPrefix(o.prefix, "/") {
		return fmt.Errorf("etcd registry: prefix %q must start with '/'", o.prefix)
	}
	return nil
}
