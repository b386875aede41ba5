package micro

import (
	"slices"
	"strings"

	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"

	"github.com/microgrpc/microgrpc/interceptors/tracing"
	"github.com/microgrpc/microgrpc/resolver"
)

// serverOptions are the options of the *grpc.Server a service creates:
// strict codec negotiation, the user's options, then the interceptor chains.
func (s *Service) serverOptions() []grpc.ServerOption {
	var opts []grpc.ServerOption
	if s.opts.strictCodec {
		opts = append(opts, strictCodecOption())
	}
	opts = append(opts, s.opts.serverOpts...)
	if s.opts.tracing != nil {
		opts = append(opts, tracing.ServerOption(s.opts.tracing))
	}
	unary, stream := s.opts.unaryServer, s.opts.streamServer
	if s.metrics != nil {
		// Outermost: count every call, also those a wrapper refuses.
		unary = append([]grpc.UnaryServerInterceptor{s.metrics.UnaryServerInterceptor()}, unary...)
		stream = append([]grpc.StreamServerInterceptor{s.metrics.StreamServerInterceptor()}, stream...)
	}
	if len(unary) > 0 {
		opts = append(opts, grpc.ChainUnaryInterceptor(unary...))
	}
	if len(stream) > 0 {
		opts = append(opts, grpc.ChainStreamInterceptor(stream...))
	}
	return opts
}

const (
	healthService        = "grpc.health.v1.Health"
	reflectionV1         = "grpc.reflection.v1.ServerReflection"
	reflectionV1Alpha    = "grpc.reflection.v1alpha.ServerReflection"
	reflectionNamePrefix = "grpc.reflection."
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

func isInfraService(name string) bool {
	return name == healthService || strings.HasPrefix(name, reflectionNamePrefix)
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
