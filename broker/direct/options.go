package direct

import (
	"crypto/tls"
	"log/slog"
	"time"

	"google.golang.org/grpc"

	"github.com/microgrpc/microgrpc/broker"
	"github.com/microgrpc/microgrpc/resolver"
)

// Defaults.
const (
	// DefaultAddress is where the broker's own server listens (only
	// without WithServer).
	DefaultAddress          = ":0"
	DefaultRequestTimeout   = 10 * time.Second
	DefaultRegisterTTL      = 30 * time.Second
	DefaultRegisterInterval = 10 * time.Second
	// DefaultIdleTimeout is how long a topic's subscriber list is kept
	// (and followed) after its last Publish, and how long a connection to
	// a subscriber node, or a publisher's stream to us, stays open with
	// nothing in flight.
	DefaultIdleTimeout = 2 * time.Minute
	// DefaultMaxQueuedBytes bounds the bytes of the deliveries that wait,
	// per subscription, for one of its MaxConcurrent handlers; beyond it
	// the publisher is told the subscriber is busy (RESOURCE_EXHAUSTED, and
	// a queue group tries another member).
	DefaultMaxQueuedBytes = 8 << 20
	// DefaultMaxUnanswered bounds the deliveries one publisher's stream
	// has in a subscriber node without their results sent back; beyond it
	// the node stops reading the stream, and gRPC's flow control holds
	// the publisher back. It also bounds what a publisher that stops
	// reading its results makes the node hold for it: that many small
	// results, until its stream ends.
	DefaultMaxUnanswered = 1024
)

type options struct {
	registry         resolver.Registry
	server           grpc.ServiceRegistrar
	advertiseFunc    func() string
	address          string
	advertise        string
	serverTLS        *tls.Config
	clientTLS        *tls.Config
	mutualTLS        bool
	requestTimeout   time.Duration
	maxSize          int
	registerTTL      time.Duration
	registerInterval time.Duration
	idleTimeout      time.Duration
	maxQueuedBytes   int
	maxUnanswered    int
	token            string
	insecureToken    bool
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
		maxQueuedBytes:   DefaultMaxQueuedBytes,
		maxUnanswered:    DefaultMaxUnanswered,
		logger:           slog.Default(),
	}
}

// Option configures NewBroker.
type Option func(*options)

// WithRegistry sets the registry subscriptions are announced in and found
// through; brokers that should reach each other must share it (the
// service's registry, as micro does).
func WithRegistry(r resolver.Registry) Option { return func(o *options) { o.registry = r } }

// WithServer makes the broker receive deliveries on srv, a node's own
// gRPC server, instead of a server of its own: NewBroker registers the
// delivery service on it, so srv must not be serving yet. advertise
// returns the node's advertised address once it serves ("" before);
// subscriptions are announced with it. The server's TLS is the node's:
// give WithTLS the same server configuration, so that the broker knows
// whether deliveries are authenticated.
func WithServer(srv grpc.ServiceRegistrar, advertise func() string) Option {
	return func(o *options) { o.server, o.advertiseFunc = srv, advertise }
}

// WithAddress sets the address the broker's own server listens on
// (default ":0"); unused with WithServer.
func WithAddress(a string) Option { return func(o *options) { o.address = a } }

// WithAdvertise sets the address of the broker's own server announced to
// publishers; unused with WithServer.
func WithAdvertise(a string) Option { return func(o *options) { o.advertise = a } }

// WithTLS makes the broker's own server serve TLS with server (with
// WithServer: says that the node's server does), and connections to
// subscribers use client; either may be nil on a broker that only
// publishes or only subscribes. mutual says that server requires client
// certificates from a CA: publishers are then authenticated by them.
func WithTLS(server, client *tls.Config, mutual bool) Option {
	return func(o *options) {
		o.serverTLS, o.clientTLS, o.mutualTLS = server.Clone(), client.Clone(), mutual
		if o.clientTLS != nil {
			o.clientTLS.NextProtos = []string{"h2"}
		}
	}
}

// WithToken sets a shared secret: subscribers accept streams only from
// publishers that present it (compared in constant time) or a client
// certificate their server verified, and publishers present it. It is
// sent only over TLS, unless WithInsecureToken. A publisher without it
// gets UNAUTHENTICATED, logged with its address, and its message never
// reaches a handler.
func WithToken(token string) Option { return func(o *options) { o.token = token } }

// WithInsecureToken lets publishers send the token over connections
// without TLS, where anyone on the path can read it: for networks the
// operator trusts, never by default.
func WithInsecureToken() Option { return func(o *options) { o.insecureToken = true } }

// WithMaxQueuedBytes sets how many bytes of deliveries may wait per
// subscription (default DefaultMaxQueuedBytes).
func WithMaxQueuedBytes(n int) Option {
	return func(o *options) {
		if n > 0 {
			o.maxQueuedBytes = n
		}
	}
}

// WithRequestTimeout bounds each delivery, from the publisher's send to
// the handler's result (the handler's context has the deadline).
func WithRequestTimeout(d time.Duration) Option {
	return func(o *options) {
		if d > 0 {
			o.requestTimeout = d
		}
	}
}

// WithMaxMessageSize sets the largest message published or accepted.
func WithMaxMessageSize(n int) Option { return func(o *options) { o.maxSize = n } }

// WithRegisterTTL sets the TTL of subscription registrations and how often
// they are refreshed.
func WithRegisterTTL(ttl, interval time.Duration) Option {
	return func(o *options) { o.registerTTL, o.registerInterval = ttl, interval }
}

// WithIdleTimeout sets how long a publisher keeps following a topic's
// subscribers after its last Publish to it, and how long connections and
// streams with nothing in flight are kept (default DefaultIdleTimeout).
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
