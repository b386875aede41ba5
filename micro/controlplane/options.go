package controlplane

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"google.golang.org/grpc"
)

// ErrInvalidOption wraps every error about an option given to [New].
var ErrInvalidOption = errors.New("controlplane: invalid option")

// DefaultVersionHeader is the request header whose value selects the
// nodes of one version (see [WithVersionHeader]).
const DefaultVersionHeader = "x-version"

// DefaultHealthCheckInterval is how often [WithHealthCheck] asks each node
// when given zero.
const DefaultHealthCheckInterval = 2 * time.Second

// Option configures a control plane made by [New].
type Option func(*options) error

type options struct {
	logger        *slog.Logger
	versionHeader string
	// weights are the default route's split between versions, by service.
	weights       map[string]map[string]uint32
	health        bool
	healthEvery   time.Duration
	healthDial    []grpc.DialOption
	serverOptions []grpc.ServerOption
	readyTimeout  time.Duration
}

func defaultOptions() options {
	return options{
		logger:        slog.Default(),
		versionHeader: DefaultVersionHeader,
		weights:       map[string]map[string]uint32{},
		readyTimeout:  15 * time.Second,
	}
}

// WithLogger sets the logger of registry failures, rejected configuration
// (NACKs) and health changes; the default is slog.Default().
func WithLogger(l *slog.Logger) Option {
	return func(o *options) error {
		if l == nil {
			return fmt.Errorf("%w: nil logger", ErrInvalidOption)
		}
		o.logger = l
		return nil
	}
}

// WithVersionHeader sets the request header that routes a call to the
// nodes of one version: a call carrying "x-version: v2" (the default
// header) reaches only nodes registered with version v2, while such nodes
// exist. An empty name turns version routes off.
func WithVersionHeader(name string) Option {
	return func(o *options) error {
		o.versionHeader = name
		return nil
	}
}

// WithVersionWeights splits the calls of service that name no version
// (see [WithVersionHeader]) between its versions by weight, for canaries:
// {"v1": 95, "v2": 5} sends one call in twenty to the v2 nodes. Versions
// without nodes are left out of the split; when none of them has nodes,
// calls go to every node, as they do for a service without weights.
func WithVersionWeights(service string, weights map[string]uint32) Option {
	return func(o *options) error {
		total := uint64(0)
		for _, w := range weights {
			total += uint64(w)
		}
		if total == 0 {
			return fmt.Errorf("%w: version weights of %q add up to zero", ErrInvalidOption, service)
		}
		c := make(map[string]uint32, len(weights))
		for v, w := range weights {
			c[v] = w
		}
		o.weights[service] = c
		return nil
	}
}

// WithHealthCheck makes the control plane ask every node, every interval
// (DefaultHealthCheckInterval when zero), for its grpc.health.v1 status
// under the node's health service name (the service's own name for micro
// services), and mark a node as UNHEALTHY in the assignment, so that xDS
// clients stop sending it calls, when it answers anything but SERVING, or
// twice in a row does not answer (within the interval, and at least a
// second). dialOpts
// are how it reaches the nodes (their transport credentials, for a start);
// without them it connects in plaintext.
func WithHealthCheck(interval time.Duration, dialOpts ...grpc.DialOption) Option {
	return func(o *options) error {
		if interval < 0 {
			return fmt.Errorf("%w: negative health check interval %v", ErrInvalidOption, interval)
		}
		if interval == 0 {
			interval = DefaultHealthCheckInterval
		}
		o.health, o.healthEvery, o.healthDial = true, interval, dialOpts
		return nil
	}
}

// WithServerOptions adds options to the gRPC server that [ControlPlane.Serve]
// makes: its transport credentials (TLS, mutual TLS), limits, keepalive.
func WithServerOptions(opts ...grpc.ServerOption) Option {
	return func(o *options) error {
		o.serverOptions = append(o.serverOptions, opts...)
		return nil
	}
}

// WithReadyTimeout bounds how long [ControlPlane.Serve] waits for the
// registry's first listing before it serves what it has (default 15 s).
func WithReadyTimeout(d time.Duration) Option {
	return func(o *options) error {
		if d < 0 {
			return fmt.Errorf("%w: negative ready timeout %v", ErrInvalidOption, d)
		}
		o.readyTimeout = d
		return nil
	}
}
