package micro

import (
	"context"
	"fmt"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	grpcresolver "google.golang.org/grpc/resolver"
	"google.golang.org/grpc/status"

	"github.com/microgrpc/microgrpc/balancer/randomhash"
	"github.com/microgrpc/microgrpc/interceptors/throttle"
	"github.com/microgrpc/microgrpc/interceptors/timeout"
	"github.com/microgrpc/microgrpc/resolver"
)

type resolverBuilder = grpcresolver.Builder

// Dial returns a connection to the named service, resolved through the
// service's registry and balanced across its nodes:
//
//	greeter := pb.NewGreeterClient(svc.Dial("greeter"))
//
// Connections are cached per name and closed when the service stops (or
// Close is called); callers must not close them. Dial never fails: when a
// connection cannot be made (the name is invalid, the service is closed)
// every call on the returned connection fails with a status saying why. Use
// [Service.Conn] to get that error instead.
func (s *Service) Dial(name string) *grpc.ClientConn {
	cc, err := s.Conn(name)
	if err == nil {
		return cc
	}
	return s.failingConn(name, err)
}

// Conn is Dial with the error: it returns an error when name is not a valid
// service name, the service is closed, an option given to NewService is
// invalid, the registry cannot be made, or the dial options are invalid.
func (s *Service) Conn(name string) (*grpc.ClientConn, error) {
	if err := resolver.ValidateName(name); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "micro: dial: %v", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	if s.optErr != nil {
		return nil, status.Error(codes.FailedPrecondition, s.optErr.Error())
	}
	s.used = true
	if cc, ok := s.conns[name]; ok {
		return cc, nil
	}
	if s.builder == nil {
		reg, err := s.registryLocked()
		if err != nil {
			return nil, status.Error(codes.Unavailable, err.Error())
		}
		s.builder = resolver.NewBuilder(reg,
			resolver.WithGracePeriod(s.opts.resolverGracePeriod),
			resolver.WithLogger(s.opts.logger))
	}
	dopts, err := s.dialOptionsLocked()
	if err != nil {
		return nil, status.Error(codes.FailedPrecondition, err.Error())
	}
	cc, err := grpc.NewClient(s.builder.Scheme()+":///"+name, dopts...)
	if err != nil {
		return nil, fmt.Errorf("micro: dial %q: %w", name, err)
	}
	s.conns[name] = cc
	return cc, nil
}

// dialOptionsLocked are the options of every connection made by Conn.
// Transport credentials (TLS with WithTLS, else insecure) come first so that
// credentials in the user's dial options replace them. Caller must hold s.mu. Interceptors, outermost first: the request timeout (it
// bounds the whole call, retries included), the user's wrappers, then the
// balancer's, closest to the call so that it sees call options the
// wrappers add.
func (s *Service) dialOptionsLocked() ([]grpc.DialOption, error) {
	creds := insecure.NewCredentials()
	src, err := s.tlsSourceLocked()
	if err != nil {
		return nil, err
	}
	if src != nil {
		creds = src.ClientCredentials("h2")
	}
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		grpc.WithResolvers(s.builder),
		grpc.WithDefaultServiceConfig(s.serviceConfig()),
	}
	if s.opts.keepalive.Time > 0 {
		opts = append(opts, grpc.WithKeepaliveParams(s.opts.keepalive))
	}
	opts = append(opts, s.opts.dialOpts...)
	var unary []grpc.UnaryClientInterceptor
	var stream []grpc.StreamClientInterceptor
	if s.opts.throttling {
		// Outermost: it sees a call's final outcome, after retries, and
		// the default request timeout's expiry as the service's.
		t := throttle.New()
		unary = append(unary, t.UnaryClientInterceptor())
		stream = append(stream, t.StreamClientInterceptor())
	}
	if s.opts.requestTimeout > 0 {
		unary = append(unary, timeout.UnaryClientInterceptor(s.opts.requestTimeout))
		stream = append(stream, timeout.StreamClientInterceptor(s.opts.requestTimeout))
	}
	unary = append(unary, s.opts.unaryClient...)
	unary = append(unary, randomhash.UnaryClientInterceptor())
	stream = append(stream, s.opts.streamClient...)
	stream = append(stream, randomhash.StreamClientInterceptor())
	if src == nil {
		// Around the outermost, so that it sees the call's final error;
		// folded into it rather than a link of its own, which every call
		// would pay for.
		unary[0], stream[0] = plaintextHintUnary(unary[0]), plaintextHintStream(stream[0])
	}
	return append(opts, grpc.WithChainUnaryInterceptor(unary...), grpc.WithChainStreamInterceptor(stream...)), nil
}

// failingConn returns a connection on which every call fails with err. It
// is cached like real connections, one per name, so that repeated Dials of
// a bad name cost nothing more and Close releases it.
func (s *Service) failingConn(name string, err error) *grpc.ClientConn {
	key := "\x00failed:" + name
	s.mu.Lock()
	if cc, ok := s.conns[key]; ok {
		s.mu.Unlock()
		return cc
	}
	s.mu.Unlock()
	st, ok := status.FromError(err)
	if !ok {
		st = status.New(codes.Unavailable, err.Error())
	}
	fail := st.Err()
	cc, nerr := grpc.NewClient("passthrough:///"+name,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithUnaryInterceptor(func(context.Context, string, any, any, *grpc.ClientConn, grpc.UnaryInvoker, ...grpc.CallOption) error {
			return fail
		}),
		grpc.WithStreamInterceptor(func(context.Context, *grpc.StreamDesc, *grpc.ClientConn, string, grpc.Streamer, ...grpc.CallOption) (grpc.ClientStream, error) {
			return nil, fail
		}))
	if nerr != nil {
		// Cannot happen with these fixed options; keep the original error
		// visible if it ever does.
		s.opts.logger.Error("micro: cannot build failing connection", "error", nerr, "cause", err)
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conns == nil { // closed: nobody would close it later
		go cc.Close()
		return cc
	}
	if old, ok := s.conns[key]; ok { // a concurrent Dial of the name won
		go cc.Close()
		return old
	}
	s.conns[key] = cc
	return cc
}

// A plaintext client of a TLS server sees only "error reading server
// preface: connection reset by peer" (the server drops what is not a TLS
// handshake): the hint says what is most likely wrong.
func plaintextHint(err error) error {
	st, ok := status.FromError(err)
	if !ok || st.Code() != codes.Unavailable || !strings.Contains(st.Message(), "error reading server preface") {
		return err
	}
	return status.Errorf(codes.Unavailable, "%s (the server may require TLS: give this service its CA with --tls_ca_file or micro.WithTLS)", st.Message())
}

// plaintextHintUnary is next with plaintextHint applied to its error.
func plaintextHintUnary(next grpc.UnaryClientInterceptor) grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		return plaintextHint(next(ctx, method, req, reply, cc, invoker, opts...))
	}
}

// plaintextHintStream is next with plaintextHint applied to its error.
func plaintextHintStream(next grpc.StreamClientInterceptor) grpc.StreamClientInterceptor {
	return func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		cs, err := next(ctx, desc, cc, method, streamer, opts...)
		return cs, plaintextHint(err)
	}
}
