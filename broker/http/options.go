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
	// DefaultMaxQueued bounds the deliveries that wait, per subscription,
	// for one of its MaxConcurrent handlers; beyond it the publisher is
	// told the subscriber is busy (and a queue group tries another member).
	DefaultMaxQueued = 1024
	// DefaultMaxHeaderBytes bounds the headers of a publisher's request.
	DefaultMaxHeaderBytes = 64 << 10
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
	maxQueued        int
	token            string
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
		maxQueued:        DefaultMaxQueued,
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

// WithToken makes the subscriber side accept deliveries only from
// publishers that present token (compared in constant time), and the
// publishing side present it: a shared secret for networks without mutual
// TLS. A publisher without it gets 401, logged with its address, and its
// message never reaches a handler. With mutual TLS (WithTLS with a server
// config that requires client certificates) a publisher needs a valid
// certificate instead, or as well.
func WithToken(token string) Option { return func(o *options) { o.token = token } }

// WithMaxQueued sets how many deliveries may wait per subscription
// (default DefaultMaxQueued).
func WithMaxQueued(n int) Option {
	return func(o *options) {
		if n > 0 {
			o.maxQueued = n
		}
	}
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
