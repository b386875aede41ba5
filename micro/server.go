package micro

import (
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/tap"

	"github.com/microgrpc/microgrpc/codec"
	"github.com/microgrpc/microgrpc/interceptors/shed"
	"github.com/microgrpc/microgrpc/internal/grpclimits"
	"github.com/microgrpc/microgrpc/internal/reqmem"
	"github.com/microgrpc/microgrpc/resolver"
)

// serverOptions are the options of the *grpc.Server a service creates:
// strict codec negotiation, the user's options, then the interceptor chains.
func (s *Service) serverOptionsLocked() ([]grpc.ServerOption, error) {
	opts := append(ServerKeepalive(), ServerLimits()...)
	opts = append(opts, grpc.NumStreamWorkers(DefaultStreamWorkers))
	src, err := s.tlsSourceLocked()
	if src != nil {
		// First, so that credentials in WithGRPCServerOptions win.
		opts = append([]grpc.ServerOption{grpc.Creds(credentials.NewTLS(src.ServerConfig("h2")))}, opts...)
	}
	// grpc-go takes one tap handle: the codec check runs the gate's.
	var memTap tap.ServerInHandle
	if s.opts.requestMemory > 0 {
		gate := newRequestGate(s.opts.requestMemory)
		opts = append(opts, requestGateOptions(gate)...)
		memTap = gate.Tap
	}
	switch {
	case s.opts.strictCodec:
		opts = append(opts, grpc.InTapHandle(codec.StrictServerTap(memTap)))
	case memTap != nil:
		opts = append(opts, grpc.InTapHandle(memTap))
	}
	opts = append(opts, s.opts.serverOpts...)
	unary, stream := s.opts.unaryServer, s.opts.streamServer
	if s.opts.loadShedding {
		// Outermost, so that a refused call costs no other interceptor.
		l := shed.New()
		unary = append([]grpc.UnaryServerInterceptor{l.UnaryServerInterceptor()}, unary...)
		stream = append([]grpc.StreamServerInterceptor{l.StreamServerInterceptor()}, stream...)
	}
	if len(unary) > 0 {
		opts = append(opts, grpc.ChainUnaryInterceptor(unary...))
	}
	if len(stream) > 0 {
		opts = append(opts, grpc.ChainStreamInterceptor(stream...))
	}
	return opts, err
}

// Keepalive defaults. A node that stops answering without closing its
// connections (a long pause, SIGSTOP, a partition that drops packets) is
// noticed by a client within DefaultKeepaliveTime + DefaultKeepaliveTimeout
// even when it has nothing in flight; calls that do reach it are cut
// shorter by the balancer, which ejects a node missing deadlines while
// others answer. grpc-go does not ping more often than every 10 s.
const (
	DefaultKeepaliveTime    = grpclimits.KeepaliveTime
	DefaultKeepaliveTimeout = grpclimits.KeepaliveTimeout
	// DefaultKeepaliveMinTime is the most frequent ping a server accepts:
	// below DefaultKeepaliveTime, so micro clients are never told off
	// (grpc-go's default is 5 minutes, and a client pinging more often
	// gets GOAWAY).
	DefaultKeepaliveMinTime = grpclimits.KeepaliveMinTime
)

// DefaultClientKeepalive returns the keepalive of connections made by Dial
// (WithKeepalive changes it).
func DefaultClientKeepalive() keepalive.ClientParameters {
	return keepalive.ClientParameters{Time: DefaultKeepaliveTime, Timeout: DefaultKeepaliveTimeout, PermitWithoutStream: true}
}

// ServerKeepalive returns the server options every micro service uses so
// that micro clients' keepalive pings are welcome, and so that the server
// notices dead clients too. A program that brings its own *grpc.Server
// (WithGRPCServer, Serve) should pass them to grpc.NewServer: with grpc-go's
// default policy, clients that ping every 10 s are sent GOAWAY and back off
// their pings, which delays noticing a frozen node.
func ServerKeepalive() []grpc.ServerOption { return grpclimits.Keepalive() }

// Limits of a micro service's gRPC server, so that one bad client cannot
// take a node down. Each is a grpc-go server option; give your own with
// WithGRPCServerOptions to change one (later options win).
const (
	// DefaultMaxConcurrentStreams bounds the calls in flight on one
	// connection; more wait on that connection only (grpc-go: no bound).
	DefaultMaxConcurrentStreams = grpclimits.MaxConcurrentStreams
	// DefaultConnectionTimeout bounds a connection's handshake, so that
	// connections that never speak are closed (grpc-go: 120 s).
	DefaultConnectionTimeout = grpclimits.ConnectionTimeout
	// DefaultMaxConnectionIdle closes connections with no call for that
	// long (grpc-go: never); micro clients keep a health watch open, so
	// only connections nobody uses are closed. The client reconnects when
	// it needs to.
	DefaultMaxConnectionIdle = grpclimits.MaxConnectionIdle
	// DefaultMaxRecvMsgSize is grpc-go's own, stated: a larger request gets
	// ResourceExhausted and the connection keeps serving.
	DefaultMaxRecvMsgSize = grpclimits.MaxRecvMsgSize
)

// DefaultStreamWorkers is how many goroutines a micro service's server
// keeps to run calls (grpc.NumStreamWorkers; grpc-go's default is none,
// a goroutine of its own for every call, which grows its stack again each
// time: about a tenth of a small call's server CPU). Calls beyond the
// workers busy at once get goroutines of their own, as without. Measured
// across processes, greeter Hello, against the same server without
// workers: with 64 callers about 1.12x the calls/s at 0.8x the server's
// CPU per call, with 1 caller about 1.14x. grpc-go hands calls to its
// workers in turn, so even one caller grows every worker's stack: 32
// cost 0.2 MiB of peak RSS with 1 caller and none with 64, where 64
// workers cost 0.5 MiB with 1 caller and gave no more calls/s with 64
// (go test -run '^$' -bench CrossProcess ./bench shows a service against
// raw grpc-go with and without its settings). Pass
// grpc.NumStreamWorkers(0) with WithGRPCServerOptions to turn them off; a
// program with its own *grpc.Server may pass
// grpc.NumStreamWorkers(DefaultStreamWorkers) to grpc.NewServer. The
// option is marked experimental in grpc-go.
const DefaultStreamWorkers = 32

// DefaultMaxRequestMemory is the bound on the requests a micro service's
// server holds at once (WithMaxRequestMemory, ServerRequestMemory): 8
// requests of the largest size, DefaultMaxRecvMsgSize, received together,
// and more only as they arrive smaller.
const DefaultMaxRequestMemory = 32 << 20

// DefaultRequestWait is how long a connection may keep the request
// memory bound waiting, holding room for requests it does not deliver,
// while a connection that holds less waits (ServerRequestMemory): then its
// oldest reservation is taken back and that call cancelled. Long enough
// for a 4 MiB request at 7 Mbit/s, or under the race detector on a busy
// machine; far longer than any request takes on a local network.
const DefaultRequestWait = 5 * time.Second

// requestWait is DefaultRequestWait but in tests.
var requestWait = DefaultRequestWait

// ServerRequestMemory returns the options that bound the memory a server
// holds for requests in flight to about limit bytes of requests (the
// process holds up to about three times that while it decodes them: the
// received frames, their copy in one piece, and the decoded message; 32
// concurrent 4 MiB requests to a 16 MiB limit measured +72 MiB of live
// heap, against +209 MiB without): each unary or server-streaming call
// reserves DefaultMaxRecvMsgSize before it asks for its request, and
// keeps what the request turned out to be until it ends; a call that
// finds no room waits, within its deadline, and meanwhile its client can
// send no more than a 64 KiB stream window. So 64 concurrent 4 MiB
// requests are received a few at a time instead of all at once. The
// window is fixed at 64 KiB per stream and 16 MiB per connection, which
// turns off grpc-go's growing of windows for what the server receives (a
// request, once admitted, gets a window of its whole size; a
// client-streaming call over a long round trip is slower). A program with
// its own *grpc.Server may pass these to grpc.NewServer; they include a
// tap handle (grpc.InTapHandle, which grpc-go takes only once), so that
// the bound can cancel a call. Client-streaming calls are not bounded this
// way: they read one message at a time. Health checks and reflection are
// never bounded: they answer while the bound is full.
//
// A reservation is held from a call's start until its request has
// arrived, and grpc-go tells nothing of a request before all of it came,
// so a client could hold room with streams that never send one. Three
// rules keep that from stopping a node: one connection holds at most a
// quarter of the limit (its further calls wait behind its own); room goes
// first to the connection that holds least, then to the one that
// delivered a request last; and a connection that holds more than a
// waiting call's, and delivered no request for DefaultRequestWait, has
// its oldest reservation taken back (that call ends Canceled). Streams
// that never send their request so keep other clients' calls waiting for
// at most a few times DefaultRequestWait as they start, and then not at
// all (8, 64 or 1,000 of them on 1 or 10 connections: other calls
// answered in a few ms); a client that takes longer than that to deliver
// a request while others wait loses it. A request arrives with its call's
// headers on a local network, but clients a long round trip away that
// send requests of more than a window hold their reservation that long,
// and are served a quarter of the limit per round trip. Raise the limit,
// or turn it off, for them.
//
// A micro service has it on by default (DefaultMaxRequestMemory). Its
// price is that of any grpc-go stats handler (a handler that does nothing
// costs as much), and of a cancellable context per call for its tap
// handle, which was not measured apart: with 64 small concurrent calls about 0.9x the calls per
// second, 1.15x the server's CPU per call. The server's stream workers
// (DefaultStreamWorkers) save about that: a service with its defaults
// measured 0.96-1.0x raw grpc-go's calls per second with 64 callers and
// 1.02-1.05x with 1 (go test -run '^$' -bench CrossProcess -benchtime 15x
// ./bench). grpc-go has no cheaper point that sees a request before it is
// read.
func ServerRequestMemory(limit int64) []grpc.ServerOption {
	gate := newRequestGate(limit)
	return append(requestGateOptions(gate), grpc.InTapHandle(gate.Tap))
}

func newRequestGate(limit int64) *reqmem.Gate {
	return reqmem.New(limit, DefaultMaxRecvMsgSize, requestWait)
}

// requestGateOptions are ServerRequestMemory's options but the tap handle.
func requestGateOptions(gate *reqmem.Gate) []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.StatsHandler(gate),
		grpc.InitialWindowSize(64 << 10),
		grpc.InitialConnWindowSize(16 << 20),
	}
}

// ServerLimits returns the limit options every micro service's server
// uses (see the Default* constants); a program that brings its own
// *grpc.Server may pass them to grpc.NewServer.
func ServerLimits() []grpc.ServerOption { return grpclimits.Limits() }

const (
	healthService        = "grpc.health.v1.Health"
	reflectionV1         = "grpc.reflection.v1.ServerReflection"
	reflectionV1Alpha    = "grpc.reflection.v1alpha.ServerReflection"
	reflectionNamePrefix = "grpc.reflection."
	brokerNamePrefix     = "microgrpc.broker."
)

// installStandardServices registers health and reflection unless turned
// off or already there (an existing server may have its own).
func (s *Service) installStandardServices() {
	info := s.server.GetServiceInfo()
	if s.health != nil {
		if _, ok := info[healthService]; ok {
			s.opts.logger.Info("micro: server already has a health service; keeping it", "service", s.opts.name)
			s.health = nil
		} else {
			healthpb.RegisterHealthServer(s.server, s.health)
		}
	}
	if s.opts.reflection {
		_, v1 := info[reflectionV1]
		_, v1a := info[reflectionV1Alpha]
		if !v1 && !v1a {
			reflection.Register(s.server)
		}
	}
	if s.health != nil {
		for name := range s.server.GetServiceInfo() {
			if isInfraService(name) {
				continue
			}
			s.health.SetServingStatus(name, healthpb.HealthCheckResponse_SERVING)
		}
		// The name the service was deployed as, for probes that know only
		// that (grpc_health_probe -service=greeter, orchestrators).
		s.health.SetServingStatus(s.opts.name, healthpb.HealthCheckResponse_SERVING)
	}
}

// isInfraService reports the services every node may have beside its own:
// health, reflection, and the http broker's deliveries.
func isInfraService(name string) bool {
	return name == healthService || strings.HasPrefix(name, reflectionNamePrefix) || strings.HasPrefix(name, brokerNamePrefix)
}

// endpoints lists the server's methods as registry endpoints, leaving out
// health and reflection, which every service has.
func endpoints(srv *grpc.Server) []resolver.Endpoint {
	var eps []resolver.Endpoint
	for name, info := range srv.GetServiceInfo() {
		if isInfraService(name) {
			continue
		}
		for _, m := range info.Methods {
			eps = append(eps, resolver.Endpoint{
				Name:            "/" + name + "/" + m.Name,
				ClientStreaming: m.IsClientStream,
				ServerStreaming: m.IsServerStream,
			})
		}
	}
	slices.SortFunc(eps, func(a, b resolver.Endpoint) int { return strings.Compare(a.Name, b.Name) })
	return eps
}
