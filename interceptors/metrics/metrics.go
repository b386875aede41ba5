// Package metrics counts calls in Prometheus through go-grpc-middleware's
// prometheus provider: grpc_server_handled_total, grpc_client_handled_total
// and friends, by service, method and code.
package metrics

import (
	"errors"

	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
)

// Metrics holds the server and client collectors.
type Metrics struct {
	Server *grpcprom.ServerMetrics
	Client *grpcprom.ClientMetrics
}

// New makes the collectors and registers them with reg. When reg already
// has them (several services in one process), those are shared.
func New(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{Server: grpcprom.NewServerMetrics(), Client: grpcprom.NewClientMetrics()}
	if err := reg.Register(m.Server); err != nil {
		var are prometheus.AlreadyRegisteredError
		if !errors.As(err, &are) {
			return nil, err
		}
		existing, ok := are.ExistingCollector.(*grpcprom.ServerMetrics)
		if !ok {
			return nil, err
		}
		m.Server = existing
	}
	if err := reg.Register(m.Client); err != nil {
		var are prometheus.AlreadyRegisteredError
		if !errors.As(err, &are) {
			return nil, err
		}
		existing, ok := are.ExistingCollector.(*grpcprom.ClientMetrics)
		if !ok {
			return nil, err
		}
		m.Client = existing
	}
	return m, nil
}

// UnaryServerInterceptor counts unary calls handled.
func (m *Metrics) UnaryServerInterceptor() grpc.UnaryServerInterceptor {
	return m.Server.UnaryServerInterceptor()
}

// StreamServerInterceptor counts streams handled.
func (m *Metrics) StreamServerInterceptor() grpc.StreamServerInterceptor {
	return m.Server.StreamServerInterceptor()
}

// UnaryClientInterceptor counts unary calls made.
func (m *Metrics) UnaryClientInterceptor() grpc.UnaryClientInterceptor {
	return m.Client.UnaryClientInterceptor()
}

// StreamClientInterceptor counts streams opened.
func (m *Metrics) StreamClientInterceptor() grpc.StreamClientInterceptor {
	return m.Client.StreamClientInterceptor()
}
