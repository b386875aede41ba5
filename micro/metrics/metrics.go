// Package metrics gives a micro service Prometheus metrics of its calls,
// served and made: grpc_server_handled_total, grpc_client_handled_total
// and the rest of go-grpc-middleware's prometheus provider, by service,
// method and code (see interceptors/metrics).
//
//	svc := micro.NewService(micro.WithName("greeter"), metrics.With(prometheus.DefaultRegisterer))
//
// It is a package of its own so that a service that does not count calls
// does not link Prometheus. Give it before other server interceptors so
// that it is the outermost and counts every call, also those a wrapper
// refuses. Several services in one process may share one registerer; they
// then share the collectors.
package metrics

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	imetrics "github.com/microgrpc/microgrpc/interceptors/metrics"
	"github.com/microgrpc/microgrpc/micro"
)

// With counts the service's calls in reg. When reg refuses the collectors,
// the service fails with that error (micro.FailingOption).
func With(reg prometheus.Registerer) micro.Option {
	m, err := imetrics.New(reg)
	if err != nil {
		return micro.FailingOption(fmt.Errorf("micro/metrics: %w", err))
	}
	return micro.Options(
		micro.WithUnaryServerInterceptors(m.UnaryServerInterceptor()),
		micro.WithStreamServerInterceptors(m.StreamServerInterceptor()),
		micro.WithUnaryClientInterceptors(m.UnaryClientInterceptor()),
		micro.WithStreamClientInterceptors(m.StreamClientInterceptor()),
	)
}
