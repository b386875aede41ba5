package micro

import (
	"context"
	"log/slog"
	"maps"
	"net"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"

	"github.com/microgrpc/microgrpc/broker"
	"github.com/microgrpc/microgrpc/interceptors"
	"github.com/microgrpc/microgrpc/internal/certs"
	"github.com/microgrpc/microgrpc/plugins/builtin"
	"github.com/microgrpc/microgrpc/resolver"
)

// Defaults of a [Service].
const (
	DefaultAddress          = ":0"
	DefaultRegisterTTL      = 30 * time.Second
	DefaultRegisterInterval = 10 * time.Second
	DefaultGracePeriod      = 10 * time.Second
	// DefaultDeregisterWait is the pause between deregistering and stopping
	// the server, so that clients learn the node is gone before its
	// connections close.
	DefaultDeregisterWait = 200 * time.Millisecond
)

// Hook runs at a point of a service's life (see WithBeforeStart and friends).
// An error from a before-start hook stops Run; errors from the other hooks
// are logged.
type Hook func(ctx context.Context) error

// RegisterCheck reports whether the service may be registered now; while it
// returns an error the node is kept out of (or taken out of) the registry.
type RegisterCheck func(ctx context.Context) error

type options struct {
	name, version, id      string
	idSuffix               string
	address, advertise     string
	listener               net.Listener
	metadata               map[string]string
	registry               resolver.Registry
	registryName           string
	broker                 broker.Broker
	brokerName             string
	brokerAddrs            []string
	subscriberInterceptors []interceptors.SubscriberInterceptor
	registryAddrs          []string
	registerTTL            time.Duration
	registerInterval       time.Duration
	registerCheck          RegisterCheck
	deregisterWait         time.Duration
	grace                  time.Duration
	serverOpts             []grpc.ServerOption
	grpcServer             *grpc.Server
	dialOpts               []grpc.DialOption
	unaryServer            []grpc.UnaryServerInterceptor
	streamServer           []grpc.StreamServerInterceptor
	unaryClient            []grpc.UnaryClientInterceptor
	streamClient           []grpc.StreamClientInterceptor
	beforeStart            []Hook
	afterStart             []Hook
	beforeStop             []Hook
	afterStop              []Hook
	ctx                    context.Context
	signal                 bool
	health, reflection     bool
	strictCodec            bool
	loadShedding           bool
	throttling             bool
	resolverGracePeriod    time.Duration
	requestTimeout         time.Duration
	retries                *int // nil: the balancer's default
	mdnsInterfaces         []string
	keepalive              keepalive.ClientParameters
	requestMemory          int64
	tls                    certs.Files
	brokerToken            string
	brokerInsecureToken    bool
	brokerAckWait          time.Duration // 0: the plugin's default
	brokerReplicas         int           // 0: the plugin's default
	err                    error         // from FailingOption
	logger                 *slog.Logger
}

func defaultOptions() options {
	return options{
		idSuffix:            randomSuffix(),
		address:             DefaultAddress,
		registryName:        builtin.DefaultRegistry,
		brokerName:          builtin.DefaultBroker,
		registerTTL:         DefaultRegisterTTL,
		registerInterval:    DefaultRegisterInterval,
		deregisterWait:      DefaultDeregisterWait,
		grace:               DefaultGracePeriod,
		ctx:                 context.Background(),
		signal:              true,
		health:              true,
		reflection:          true,
		strictCodec:         true,
		loadShedding:        true,
		throttling:          true,
		resolverGracePeriod: resolver.DefaultGracePeriod,
		keepalive:           DefaultClientKeepalive(),
		requestMemory:       DefaultMaxRequestMemory,
		logger:              slog.Default(),
	}
}

// Option configures a [Service].
type Option func(*options)

// WithName sets the name the service registers under and clients dial.
func WithName(name string) Option { return func(o *options) { o.name = name } }

// WithVersion sets the version announced with every node.
func WithVersion(v string) Option { return func(o *options) { o.version = v } }

// WithID sets the node id; the default is the name and a random suffix,
// unique per process and start.
func WithID(id string) Option { return func(o *options) { o.id = id } }

// WithAddress sets the address to listen on (default ":0": every interface,
// a free port).
func WithAddress(addr string) Option { return func(o *options) { o.address = addr } }

// WithListener makes the service serve on l instead of listening itself; the
// service closes it when it stops.
func WithListener(l net.Listener) Option { return func(o *options) { o.listener = l } }

// WithAdvertise sets the address announced in the registry, for a service
// behind NAT or in a container. By default the bound address is announced,
// with an unspecified host replaced by one of the machine's addresses.
func WithAdvertise(addr string) Option { return func(o *options) { o.advertise = addr } }

// WithMetadata adds node metadata announced in the registry.
func WithMetadata(md map[string]string) Option {
	return func(o *options) {
		if o.metadata == nil {
			o.metadata = map[string]string{}
		}
		maps.Copy(o.metadata, md)
	}
}

// WithRegistry sets the registry the service registers in and resolves
// other services through. The caller keeps ownership: the service does not
// close it.
func WithRegistry(r resolver.Registry) Option { return func(o *options) { o.registry = r } }

// WithRegistryPlugin makes the service use the registry plugin called name
// (see package plugins), with the given addresses; the service makes the
// registry on first use and closes it when it stops.
func WithRegistryPlugin(name string, addrs ...string) Option {
	return func(o *options) {
		o.registry = nil
		o.registryName = name
		o.registryAddrs = addrs
	}
}

// WithBroker sets the broker for Publish and RegisterSubscriber. The
// caller keeps ownership: the service unsubscribes its subscriptions but
// does not disconnect it.
func WithBroker(b broker.Broker) Option { return func(o *options) { o.broker = b } }

// WithBrokerPlugin makes the service use the broker plugin called name
// (http, nats, jetstream, memory, or a third-party one) with the given addresses; the
// service makes it on first use and disconnects it when it stops.
func WithBrokerPlugin(name string, addrs ...string) Option {
	return func(o *options) {
		o.broker = nil
		o.brokerName = name
		o.brokerAddrs = addrs
	}
}

// WithSubscriberInterceptors adds subscriber wrappers; the first given is
// the outermost (go-micro's WrapSubscriber order).
func WithSubscriberInterceptors(i ...interceptors.SubscriberInterceptor) Option {
	return func(o *options) { o.subscriberInterceptors = append(o.subscriberInterceptors, i...) }
}

// WithRegisterTTL sets how long a registration lives without a heartbeat.
func WithRegisterTTL(d time.Duration) Option { return func(o *options) { o.registerTTL = d } }

// WithRegisterInterval sets how often the registration is refreshed; keep
// it well below the TTL.
func WithRegisterInterval(d time.Duration) Option {
	return func(o *options) { o.registerInterval = d }
}

// WithRegisterCheck holds registration back while check fails, e.g. while a
// database the service needs is unreachable. It runs before every
// (re-)registration.
func WithRegisterCheck(check RegisterCheck) Option {
	return func(o *options) { o.registerCheck = check }
}

// WithDeregisterWait sets the pause between deregistration and the start of
// the graceful stop.
func WithDeregisterWait(d time.Duration) Option { return func(o *options) { o.deregisterWait = d } }

// WithGracePeriod bounds the whole shutdown (default DefaultGracePeriod):
// hooks, deregistration, the graceful stop and the subscriptions' drain
// share this one deadline, after which the server is stopped hard. Keep it
// below the orchestrator's own (Kubernetes: 30 s between SIGTERM and
// SIGKILL).
func WithGracePeriod(d time.Duration) Option { return func(o *options) { o.grace = d } }

// WithGRPCServerOptions adds options for the *grpc.Server the service
// creates.
func WithGRPCServerOptions(opts ...grpc.ServerOption) Option {
	return func(o *options) { o.serverOpts = append(o.serverOpts, opts...) }
}

// WithGRPCServer makes the service run an existing server, with its services
// and interceptors as they are: the service adds health, reflection (unless
// already registered or turned off), registration, heartbeats and graceful
// deregistration. A *grpc.Server takes its options when it is made, so
// WithGRPCServerOptions and the server interceptor options (so also
// micro/metrics and micro/tracing) cannot go with it: NewService reports
// ErrConflictingOptions
// (through Init, Run and Conn) naming them. Strict codec negotiation is
// not added to it either.
func WithGRPCServer(s *grpc.Server) Option { return func(o *options) { o.grpcServer = s } }

// WithDialOptions adds options for every connection made by Dial.
func WithDialOptions(opts ...grpc.DialOption) Option {
	return func(o *options) { o.dialOpts = append(o.dialOpts, opts...) }
}

// WithUnaryServerInterceptors adds server wrappers; the first given is the
// outermost (go-micro's WrapHandler order).
func WithUnaryServerInterceptors(i ...grpc.UnaryServerInterceptor) Option {
	return func(o *options) { o.unaryServer = append(o.unaryServer, i...) }
}

// WithStreamServerInterceptors adds stream server wrappers; the first given
// is the outermost.
func WithStreamServerInterceptors(i ...grpc.StreamServerInterceptor) Option {
	return func(o *options) { o.streamServer = append(o.streamServer, i...) }
}

// WithUnaryClientInterceptors adds client wrappers to connections made by
// Dial; the first given is the outermost (go-micro's WrapClient order).
func WithUnaryClientInterceptors(i ...grpc.UnaryClientInterceptor) Option {
	return func(o *options) { o.unaryClient = append(o.unaryClient, i...) }
}

// WithStreamClientInterceptors adds stream client wrappers; the first given
// is the outermost.
func WithStreamClientInterceptors(i ...grpc.StreamClientInterceptor) Option {
	return func(o *options) { o.streamClient = append(o.streamClient, i...) }
}

// WithBeforeStart adds a hook run before the service listens.
func WithBeforeStart(h Hook) Option {
	return func(o *options) { o.beforeStart = append(o.beforeStart, h) }
}

// WithAfterStart adds a hook run once the service serves and is registered.
func WithAfterStart(h Hook) Option {
	return func(o *options) { o.afterStart = append(o.afterStart, h) }
}

// WithBeforeStop adds a hook run when shutdown begins, before deregistration.
func WithBeforeStop(h Hook) Option {
	return func(o *options) { o.beforeStop = append(o.beforeStop, h) }
}

// WithAfterStop adds a hook run after the server has stopped.
func WithAfterStop(h Hook) Option { return func(o *options) { o.afterStop = append(o.afterStop, h) } }

// WithContext sets the context whose cancellation shuts the service down.
func WithContext(ctx context.Context) Option { return func(o *options) { o.ctx = ctx } }

// WithSignal turns shutdown on SIGINT and SIGTERM on or off (default on).
func WithSignal(on bool) Option { return func(o *options) { o.signal = on } }

// WithHealth turns the standard grpc.health.v1 service on or off (default
// on).
func WithHealth(on bool) Option { return func(o *options) { o.health = on } }

// WithReflection turns server reflection (v1 and v1alpha) on or off
// (default on).
func WithReflection(on bool) Option { return func(o *options) { o.reflection = on } }

// WithStrictCodec turns strict content-subtype negotiation on or off
// (default on): a call whose content-subtype has no registered codec is
// answered with Unimplemented instead of being decoded as protobuf.
func WithStrictCodec(on bool) Option { return func(o *options) { o.strictCodec = on } }

// WithLoadShedding turns adaptive load shedding of the service's own server
// on or off (default on; setting server_load_shedding). When the unary
// calls in flight reach an adaptive limit (interceptors/shed), a new call
// is refused at once with Unavailable and a pushback of 0, so that the
// client retries it on another node instead of queueing here; health and
// reflection are never shed, streams are not. The limiter is the outermost
// server interceptor. A server given with WithGRPCServer is the program's:
// pass it shed.ServerOptions() there.
func WithLoadShedding(on bool) Option { return func(o *options) { o.loadShedding = on } }

// WithThrottling turns client-side adaptive throttling of Dial's
// connections on or off (default on; setting client_throttling): while a
// service refuses most of a client's recent calls (UNAVAILABLE,
// RESOURCE_EXHAUSTED, DEADLINE_EXCEEDED after retries), the client refuses
// some new ones itself, at once, with the probability of Google's SRE
// formula (interceptors/throttle). Each Dial has its own, outermost of the
// client interceptors.
func WithThrottling(on bool) Option { return func(o *options) { o.throttling = on } }

// WithResolverGracePeriod sets how long Dial's resolver keeps the last good
// node list when the registry fails or the list goes empty.
func WithResolverGracePeriod(d time.Duration) Option {
	return func(o *options) { o.resolverGracePeriod = d }
}

// WithTLS turns TLS on for everything the service serves and dials: its
// gRPC server, the connections Dial makes and the http broker's deliveries
// (both sides). certFile and keyFile are the PEM certificate the service
// serves and presents as a client; caFile, when set, is the CA bundle that
// servers are verified against and that, on the serving side, client
// certificates must chain to (mutual TLS: servers then refuse clients
// without one). With caFile empty, servers are verified against the
// system's roots and clients need no certificate. The files are read again
// when they change, so certificates rotate without a restart.
//
// Clients verify a server's certificate for the name of the service they
// dial ("greeter"), so a service's certificate carries its name as a DNS
// name. Credentials given with WithDialOptions or WithGRPCServerOptions
// take precedence. The flags and environment are --tls_cert_file,
// --tls_key_file and --tls_ca_file (MICRO_TLS_CERT_FILE, ...).
func WithTLS(certFile, keyFile, caFile string) Option {
	return func(o *options) { o.tls = certs.Files{CertFile: certFile, KeyFile: keyFile, CAFile: caFile} }
}

// WithBrokerToken sets a shared secret that publishers present to
// subscribers: the http broker refuses deliveries without it (for networks
// without mutual TLS), and the NATS brokers send it as the NATS token.
// Flag and environment: --broker_token, MICRO_BROKER_TOKEN.
func WithBrokerToken(token string) Option { return func(o *options) { o.brokerToken = token } }

// WithInsecureBrokerToken lets the http broker send the broker token over
// connections without TLS, where anyone on the path can read it; without
// it, a token with TLS off is refused when the broker connects. Flag and
// environment: --broker_insecure_token, MICRO_BROKER_INSECURE_TOKEN.
func WithInsecureBrokerToken() Option { return func(o *options) { o.brokerInsecureToken = true } }

// WithMaxRequestMemory bounds the bytes of requests the server receives
// and holds at once (default DefaultMaxRequestMemory; 0 turns the bound
// off); see ServerRequestMemory for how, and for its price.
func WithMaxRequestMemory(limit int64) Option {
	return func(o *options) { o.requestMemory = max(limit, 0) }
}

// WithKeepalive sets the keepalive of connections made by Dial (default
// DefaultClientKeepalive()); a zero Time turns it off. grpc-go raises a
// Time below 10 s to 10 s. The servers called must accept the pings
// (ServerKeepalive).
func WithKeepalive(p keepalive.ClientParameters) Option { return func(o *options) { o.keepalive = p } }

// Options combines opts into one option, applied in order: for packages
// that add several settings at once (micro/metrics, micro/tracing).
func Options(opts ...Option) Option {
	return func(o *options) {
		for _, opt := range opts {
			opt(o)
		}
	}
}

// FailingOption is an option that makes the service fail with err: Init,
// Run and Conn return it. It is for packages whose options are built from
// something that can fail.
func FailingOption(err error) Option {
	return func(o *options) {
		if o.err == nil {
			o.err = err
		}
	}
}

// WithRequestTimeout sets the default timeout of calls made through Dial
// that have no earlier deadline (zero: none, the default).
func WithRequestTimeout(d time.Duration) Option { return func(o *options) { o.requestTimeout = d } }

// WithRetries sets how many times a call failing with UNAVAILABLE is retried
// on another node (0 turns retries off).
func WithRetries(n int) Option {
	return func(o *options) {
		n = max(n, 0)
		o.retries = &n
	}
}

// WithLogger sets the service's logger (default slog.Default()).
func WithLogger(l *slog.Logger) Option {
	return func(o *options) {
		if l != nil {
			o.logger = l
		}
	}
}
