package micro

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"

	"github.com/microgrpc/microgrpc/broker"
	"github.com/microgrpc/microgrpc/internal/certs"
	"github.com/microgrpc/microgrpc/plugins"
	"github.com/microgrpc/microgrpc/plugins/builtin"
	"github.com/microgrpc/microgrpc/resolver"
)

// ErrClosed is returned by Dial, Conn and Run once the service has stopped.
var ErrClosed = errors.New("micro: service closed")

// ErrConflictingOptions is wrapped by the error for options that cannot
// apply together; the error names both.
var ErrConflictingOptions = errors.New("micro: conflicting options")

// conflicts reports options that the others make impossible, instead of
// dropping them silently.
func conflicts(o *options) error {
	if o.grpcServer == nil {
		return nil
	}
	var with []string
	if len(o.serverOpts) > 0 {
		with = append(with, "WithGRPCServerOptions")
	}
	if len(o.unaryServer) > 0 {
		with = append(with, "WithUnaryServerInterceptors")
	}
	if len(o.streamServer) > 0 {
		with = append(with, "WithStreamServerInterceptors")
	}
	if len(with) == 0 {
		return nil
	}
	return fmt.Errorf("%w: WithGRPCServer and %s: a *grpc.Server takes its options, interceptors and stats handlers "+
		"when it is made, so give them to grpc.NewServer (micro/metrics and micro/tracing add server interceptors and options too)",
		ErrConflictingOptions, strings.Join(with, ", "))
}

// ErrAlreadyRunning is returned by a second concurrent call to Run.
var ErrAlreadyRunning = errors.New("micro: service already running")

// Service is a gRPC server that registers itself, and a client of the other
// services in the same registry. Create it with [NewService], register
// handlers on [Service.Server], call [Service.Run]; reach other services
// with [Service.Dial].
type Service struct {
	opts   options
	server *grpc.Server
	health *healthServer
	mu     sync.Mutex
	// reg is the registry in use: the one given with WithRegistry, or one
	// made from a plugin on first use (ownsRegistry is then true, and the
	// service closes it when it stops).
	reg          resolver.Registry
	regErr       error
	ownsRegistry bool
	// brk is the broker: the one given with WithBroker, or one made from
	// the broker plugin on first use (ownsBroker: the service disconnects
	// it when it stops).
	brk        broker.Broker
	brkErr     error
	ownsBroker bool
	// parts are the components attached with AddPart (by key, and in
	// the order attached); partState is where they are in the service's
	// life (guarded by mu): each part is started at most once.
	parts     map[any]Part
	partOrder []Part
	partState partState
	optErr    error // an option that failed in NewService
	srvErr    error // making the server's options failed (TLS files)
	tlsSrc    *certs.Source
	tlsErr    error

	running  bool
	closed   bool
	used     bool   // Conn was called: options are fixed
	address  string // advertised address once Run listens: from then on nothing more registers on the server
	conns    map[string]*grpc.ClientConn
	builder  resolverBuilder
	metaWake chan struct{}
	extraMD  map[string]string
}

// NewService returns a service configured by opts. Nothing is started:
// register handlers on Server(), then call Run. An option that fails here
// (micro/metrics on a registry that refuses the collectors) is reported by
// the first of Init, Run, Conn or Dial the program calls; an invalid name
// or TTL by Run.
func NewService(opts ...Option) *Service {
	o := defaultOptions()
	for _, opt := range opts {
		opt(&o)
	}
	s := &Service{opts: o, conns: map[string]*grpc.ClientConn{}, metaWake: make(chan struct{}, 1)}
	s.reg = o.registry
	s.brk = o.broker
	s.optErr = o.err
	if s.optErr == nil {
		s.optErr = conflicts(&o)
	}
	s.server = o.grpcServer // else made by Server, after Init
	if o.health {
		s.health = newHealthServer()
	}
	return s
}

// Server returns the service's *grpc.Server, on which generated code
// registers handlers: pb.RegisterGreeterServer(svc.Server(), h). Register
// before Run.
func (s *Service) Server() *grpc.Server {
	s.mu.Lock()
	defer s.mu.Unlock()
	srv, _ := s.serverLocked()
	return srv
}

// serverLocked returns the server, making it, and the error making its
// options gave (Run reports it; handlers can still be registered). Caller
// must hold s.mu.
func (s *Service) serverLocked() (*grpc.Server, error) {
	if s.server == nil {
		opts, err := s.serverOptionsLocked()
		if err != nil {
			s.srvErr = err
		}
		s.server = grpc.NewServer(opts...)
		if s.closed {
			// Never to serve: let its stream workers go now.
			s.server.Stop()
		}
	}
	return s.server, s.srvErr
}

// ownsServer reports whether the service made its *grpc.Server (and so
// stops it), rather than being given one (WithGRPCServer).
func (s *Service) ownsServer() bool { return s.opts.grpcServer == nil }

// tlsSourceLocked returns the TLS material, or nil when TLS is off. Caller
// must hold s.mu.
func (s *Service) tlsSourceLocked() (*certs.Source, error) {
	if s.opts.tls.Empty() {
		return nil, nil
	}
	if s.tlsSrc == nil && s.tlsErr == nil {
		s.tlsSrc, s.tlsErr = certs.New(s.opts.tls, s.opts.logger)
		if s.tlsErr != nil {
			s.tlsErr = fmt.Errorf("micro: TLS: %w", s.tlsErr)
		}
	}
	return s.tlsSrc, s.tlsErr
}

// Health returns the service's standard health server, to report the
// status of individual services; nil when health is turned off. The
// service sets every registered service SERVING when it starts and
// NOT_SERVING when shutdown begins.
func (s *Service) Health() *health.Server {
	if s.health == nil {
		return nil
	}
	return s.health.Server
}

// Name returns the service name.
func (s *Service) Name() string { return s.opts.name }

// Version returns the service version.
func (s *Service) Version() string { return s.opts.version }

// ID returns the node id: the one given with WithID, or the name and a
// random suffix.
func (s *Service) ID() string {
	if s.opts.id != "" {
		return s.opts.id
	}
	return s.opts.name + "-" + s.opts.idSuffix
}

// Address returns the advertised address while the service runs, and ""
// before.
func (s *Service) Address() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.address
}

// Registry returns the registry the service uses, making it from the
// registry plugin on first use when none was given, or the error that
// making it gave (an unknown plugin name, an interface mDNS cannot use);
// Init, Run and Conn report the same error.
func (s *Service) Registry() (resolver.Registry, error) {
	return s.registry()
}

func (s *Service) registry() (resolver.Registry, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.registryLocked()
}

// registryLocked returns the registry, making it on first use. Caller must
// hold s.mu.
func (s *Service) registryLocked() (resolver.Registry, error) {
	if s.reg != nil || s.regErr != nil {
		return s.reg, s.regErr
	}
	addrs := s.opts.registryAddrs
	if s.opts.registryName == builtin.RegistryMDNS && len(addrs) == 0 {
		addrs = s.opts.mdnsInterfaces // mdns takes interface names as its addresses
	}
	ro := plugins.RegistryOptions{Addrs: addrs}
	if src, err := s.tlsSourceLocked(); err != nil {
		s.regErr = err
		return nil, err
	} else if src != nil {
		ro.TLS, ro.Credentials = src.ClientConfig(), src.ClientCredentials()
	}
	s.reg, s.regErr = plugins.NewRegistry(s.opts.registryName, ro)
	if s.regErr != nil {
		s.regErr = fmt.Errorf("micro: %w", s.regErr)
	}
	s.ownsRegistry = s.regErr == nil
	return s.reg, s.regErr
}

// SetMetadata replaces the node metadata given with WithMetadata by md
// merged over it, and announces the change at once when running.
func (s *Service) SetMetadata(md map[string]string) {
	s.mu.Lock()
	s.extraMD = md
	s.mu.Unlock()
	select {
	case s.metaWake <- struct{}{}:
	default:
	}
}

func (s *Service) validate() error {
	if s.optErr != nil {
		return s.optErr
	}
	if err := resolver.ValidateName(s.opts.name); err != nil {
		return fmt.Errorf("micro: %w (set one with micro.WithName)", err)
	}
	if t := s.opts.tls; s.ownsServer() && t.CAFile != "" && t.CertFile == "" && t.KeyFile == "" {
		// Every handshake would fail with "no certificate to serve".
		return errors.New("micro: TLS: a service that serves needs its certificate and key " +
			"(--tls_cert_file and --tls_key_file, or micro.WithTLS): only a CA file (--tls_ca_file) is set, " +
			"which is enough to call services (Dial) but not to serve")
	}
	if s.opts.registerTTL > 0 && s.opts.registerInterval >= s.opts.registerTTL {
		return fmt.Errorf("micro: register interval %s must be shorter than the register TTL %s",
			s.opts.registerInterval, s.opts.registerTTL)
	}
	return nil
}

func randomSuffix() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
