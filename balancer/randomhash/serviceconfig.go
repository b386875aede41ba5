package randomhash

import (
	"encoding/json"
	"fmt"
	"time"

	"google.golang.org/grpc"
)

// Defaults of the service config's retry policy.
const (
	// DefaultMaxAttempts is the first attempt plus two retries.
	DefaultMaxAttempts    = 3
	DefaultInitialBackoff = 10 * time.Millisecond
	DefaultMaxBackoff     = 200 * time.Millisecond
	// DefaultRetryTokens and DefaultRetryTokenRatio set retryThrottling:
	// each failed attempt costs a token, each success returns 0.1, and
	// retries stop while fewer than half the tokens are left, so a failing
	// fleet is not hammered.
	DefaultRetryTokens     = 100
	DefaultRetryTokenRatio = 0.1
)

// DefaultServiceConfig selects this policy, client-side health checking
// against the standard health service, a retry policy retrying UNAVAILABLE
// on another node (DefaultMaxAttempts attempts, backoff from
// DefaultInitialBackoff to DefaultMaxBackoff), and retry throttling. Pass it
// with grpc.WithDefaultServiceConfig, together with the interceptors (see
// DialOptions), or build a variant with ServiceConfig.
var DefaultServiceConfig = ServiceConfig()

// ConfigOption changes the service config built by ServiceConfig.
type ConfigOption func(*scOptions)

type scOptions struct {
	maxAttempts                int
	initialBackoff, maxBackoff time.Duration
	healthService              *string
	lb                         map[string]any
}

// WithMaxAttempts sets the attempts of a call, first one included (grpc-go
// caps it at 5); 1 turns retries off.
func WithMaxAttempts(n int) ConfigOption { return func(o *scOptions) { o.maxAttempts = n } }

// WithBackoff sets the retry backoff range.
func WithBackoff(initial, maxBackoff time.Duration) ConfigOption {
	return func(o *scOptions) { o.initialBackoff, o.maxBackoff = initial, maxBackoff }
}

// WithHealthCheck sets the health service name grpc-go's client-side
// health check asks every node for ("" is the whole server, the default).
// Independently of it, a node whose record names a health service
// (resolver.Node.HealthService; every micro service's does) must also
// answer SERVING for that name before it gets calls, so that a registry
// record pointing at some other gRPC server never does. WithoutHealthCheck
// turns both off.
func WithHealthCheck(service string) ConfigOption {
	return func(o *scOptions) { o.healthService = &service }
}

// WithoutHealthCheck turns client-side health checking off.
func WithoutHealthCheck() ConfigOption { return func(o *scOptions) { o.healthService = nil } }

// WithEjection sets outlier ejection: after threshold consecutive failures
// (UNAVAILABLE, or DEADLINE_EXCEEDED while another node answers) a node is
// left out for base, doubling up to maxEjection while it keeps failing;
// threshold 0 turns it off.
func WithEjection(threshold uint32, base, maxEjection time.Duration) ConfigOption {
	return func(o *scOptions) {
		o.lb["ejectionThreshold"] = threshold
		o.lb["baseEjectionTime"] = base.String()
		o.lb["maxEjectionTime"] = maxEjection.String()
	}
}

// WithSubsetSize sets how many nodes of a larger service a client connects
// to (default DefaultSubsetSize); 0 connects to all of them.
func WithSubsetSize(n uint32) ConfigOption {
	return func(o *scOptions) { o.lb["subsetSize"] = n }
}

// WithPick sets how a call without a hash key chooses its node:
// PickLeastLoaded (the default), the less loaded of two drawn at random,
// or PickRandom, a uniformly random one.
func WithPick(mode string) ConfigOption {
	return func(o *scOptions) { o.lb["pick"] = mode }
}

// ServiceConfig returns a service config JSON like DefaultServiceConfig,
// changed by opts.
func ServiceConfig(opts ...ConfigOption) string {
	empty := ""
	o := scOptions{
		maxAttempts:    DefaultMaxAttempts,
		initialBackoff: DefaultInitialBackoff,
		maxBackoff:     DefaultMaxBackoff,
		healthService:  &empty,
		lb:             map[string]any{},
	}
	for _, opt := range opts {
		opt(&o)
	}
	sc := map[string]any{
		"loadBalancingConfig": []any{map[string]any{Name: o.lb}},
	}
	if o.healthService != nil {
		sc["healthCheckConfig"] = map[string]any{"serviceName": *o.healthService}
		o.lb["serviceHealthCheck"] = true
	}
	if o.maxAttempts > 1 {
		sc["methodConfig"] = []any{map[string]any{
			"name": []any{map[string]any{}},
			"retryPolicy": map[string]any{
				"maxAttempts":          o.maxAttempts,
				"initialBackoff":       seconds(o.initialBackoff),
				"maxBackoff":           seconds(o.maxBackoff),
				"backoffMultiplier":    2,
				"retryableStatusCodes": []string{"UNAVAILABLE"},
			},
		}}
		sc["retryThrottling"] = map[string]any{"maxTokens": DefaultRetryTokens, "tokenRatio": DefaultRetryTokenRatio}
	}
	b, err := json.Marshal(sc)
	if err != nil {
		panic(err) // only maps of literals above
	}
	return string(b)
}

func seconds(d time.Duration) string { return fmt.Sprintf("%.3fs", d.Seconds()) }

// DialOptions returns what a plain grpc-go client needs for the full
// behaviour: the service config (built from opts) and the interceptors that
// let retries avoid nodes that already failed the call and carry the call
// options (hash key, filters) to the picker.
func DialOptions(opts ...ConfigOption) []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithDefaultServiceConfig(ServiceConfig(opts...)),
		grpc.WithChainUnaryInterceptor(UnaryClientInterceptor()),
		grpc.WithChainStreamInterceptor(StreamClientInterceptor()),
	}
}
