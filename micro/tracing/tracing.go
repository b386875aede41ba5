// Package tracing traces a micro service's calls, served and made, with
// OpenTelemetry (otelgrpc stats handlers, see interceptors/tracing):
//
//	svc := micro.NewService(micro.WithName("greeter"), tracing.With(otel.GetTracerProvider()))
//
// It is a package of its own so that a service that does not trace does
// not link OpenTelemetry.
package tracing

import (
	"go.opentelemetry.io/otel/trace"

	itracing "github.com/microgrpc/microgrpc/interceptors/tracing"
	"github.com/microgrpc/microgrpc/micro"
)

// With traces the service's calls with tp.
func With(tp trace.TracerProvider) micro.Option {
	return micro.Options(
		micro.WithGRPCServerOptions(itracing.ServerOption(tp)),
		micro.WithDialOptions(itracing.DialOption(tp)),
	)
}
