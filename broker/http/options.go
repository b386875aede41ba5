package http

import (
	"crypto/tls"
	"log/slog"
	"time"

	"github.com/microgrpc/microgrpc/broker"
	"github.com/microgrpc/microgrpc/resolver"
)

// Defaults.
const (
	DefaultAddress          = ":0"
	DefaultRequestTimeout   = 10 * time.Second
	DefaultRegisterTTL      = 30 * time.Second
	DefaultRegisterInterval = 10 * time.Second
	// DefaultIdleTimeout is how long a topic's subscriber list is kept
	// (and followed) after its last Publish.
	DefaultIdleTimeout = 2 * time.Minute
)

type options struct {
	registry         resolver.Registry
	address          string
	advertise        string
	serverTLS        *tls.Config
	clientTLS        *tls.Config
	requestTimeout   time.Duration
	maxSize          int
	registerTTL      time.Duration
	registerInterval time.Duration
	idleTimeout      time.Duration
	logger           *slog.Logger
}

func defaultOptions() options {
	return options{
		address:          DefaultAddress,
		requestTimeout:   DefaultRequestTimeout,
		maxSize:          broker.DefaultMaxMessageSize,
		registerTTL:      DefaultRegisterTTL,
		registerInterval: DefaultRegisterInterval,
		idleTimeout:      DefaultIdleTimeout,
		logger:           slog.Default(),
	}
}

// Option configures NewBroker.
type Option func(*options)

// WithRegistry sets the registry subscriptions are announced in and found
// through; brokers that should reach each other must share it (the
// service's registry, as micro does).
func WithRegistry(r resolver.Registry) Option { return func(o *options) { o.registry = r } }

// WithAddress sets the address the subscriber endpoint listens on (default
// ":0").
func WithAddress(a string) Option { return func(o *options) { o.address = a } }

// WithAdvertise sets the address announced to publishers.
func WithAdvertise(a string) Option { return func(o *options) { o.advertise = a } }

// WithTLS serves subscribers over TLS with server, and publishes with
// client (HTTP/2 is then negotiated); either may be nil on a broker that
// only publishes or only subscribes.
func WithTLS(server, client *tls.Config) Option {
	// Cloned: net/http adds its ALPN protocols to the server config, which
	// must not touch a config the caller shares between brokers.
	return func(o *options) { o.serverTLS, o.clientTLS = server.Clone(), client.Clone() }
}

// WithRequestTimeout bounds each delivery request.
func WithRequestTimeout(d time.Duration) Option { return func(o *options) { o.requestTimeout = d } }

// WithMaxMessageSize sets the largest message published or accepted.
func WithMaxMessageSize(n int) Option { return func(o *options) { o.maxSize = n } }

// WithRegisterTTL sets the TTL of subscription registrations and how often
// they are refreshed.
func WithRegisterTTL(ttl, interval time.Duration) Option {
	return func(o *options) { o.registerTTL, o.registerInterval = ttl, interval }
}

// WithIdleTimeout sets how long a publisher keeps following a topic's
// subscribers after its last Publish to it (default DefaultIdleTimeout).
// The next Publish lists them again.
func WithIdleTimeout(d time.Duration) Option {
	return func(o *options) {
		if d > 0 {
			o.idleTimeout = d
		}
	}
}

// WithLogger sets the logger.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) {
		if l != nil {
			o.logger = l
		}
	}
}
