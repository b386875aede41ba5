package randomhash

import (
	"encoding/json"
	"fmt"
	"time"

	"google.golang.org/grpc/serviceconfig"
)

// Defaults of the load-balancing config.
const (
	DefaultEjectionThreshold = 3
	DefaultBaseEjectionTime  = time.Second
	DefaultMaxEjectionTime   = 30 * time.Second
	// DefaultSubsetSize is how many nodes of a larger service one client
	// connects to (see subsetSize).
	DefaultSubsetSize = 32
)

// lbConfig is the policy's config in the service config:
//
//	{"loadBalancingConfig":[{"random_hash":{
//	    "ejectionThreshold": 3,        // consecutive failures (UNAVAILABLE, or DEADLINE_EXCEEDED while others answer); 0: off
//	    "baseEjectionTime": "1s",      // first cool-down; doubles while the node keeps failing
//	    "maxEjectionTime": "30s",      // cap of the cool-down
//	    "serviceHealthCheck": true,    // also check the health name each node's record gives
//	    "subsetSize": 32,              // of a larger service, connect to this many nodes; 0: to all
//	    "pick": "least_loaded"         // or "random": a uniformly random node (see load.go)
//	}}]}
type lbConfig struct {
	serviceconfig.LoadBalancingConfig `json:"-"`

	EjectionThreshold *uint32 `json:"ejectionThreshold,omitempty"`
	BaseEjectionTime  string  `json:"baseEjectionTime,omitempty"`
	MaxEjectionTime   string  `json:"maxEjectionTime,omitempty"`
	// ServiceHealthCheck makes the policy watch the health (grpc.health.v1)
	// of every node whose record names a health service
	// (resolver.Node.HealthService) for that name, and leave the node out
	// until it answers SERVING (see health.go). Off when absent;
	// ServiceConfig turns it on with client-side health checking.
	ServiceHealthCheck bool `json:"serviceHealthCheck,omitempty"`
	// SubsetSize bounds the nodes of a service one client connects to
	// (subset.go); absent: DefaultSubsetSize; 0: all of them.
	SubsetSize *uint32 `json:"subsetSize,omitempty"`
	// Pick is how a call without a hash key chooses among the nodes it
	// may use: PickLeastLoaded (absent: the default) or PickRandom.
	Pick string `json:"pick,omitempty"`

	subsetSize    int
	threshold     uint32
	base, max     time.Duration
	serviceHealth bool
	leastLoaded   bool
}

func parseConfig(js json.RawMessage) (*lbConfig, error) {
	cfg := &lbConfig{}
	if len(js) > 0 {
		if err := json.Unmarshal(js, cfg); err != nil {
			return nil, fmt.Errorf("randomhash: parse config %s: %w", js, err)
		}
	}
	cfg.serviceHealth = cfg.ServiceHealthCheck
	switch cfg.Pick {
	case "", PickLeastLoaded:
		cfg.leastLoaded = true
	case PickRandom:
	default:
		return nil, fmt.Errorf("randomhash: pick %q: want %q or %q", cfg.Pick, PickLeastLoaded, PickRandom)
	}
	cfg.subsetSize = DefaultSubsetSize
	if cfg.SubsetSize != nil {
		cfg.subsetSize = int(*cfg.SubsetSize)
	}
	cfg.threshold = DefaultEjectionThreshold
	if cfg.EjectionThreshold != nil {
		cfg.threshold = *cfg.EjectionThreshold
	}
	var err error
	if cfg.base, err = parseDuration(cfg.BaseEjectionTime, DefaultBaseEjectionTime, "baseEjectionTime"); err != nil {
		return nil, err
	}
	if cfg.max, err = parseDuration(cfg.MaxEjectionTime, DefaultMaxEjectionTime, "maxEjectionTime"); err != nil {
		return nil, err
	}
	if cfg.max < cfg.base {
		return nil, fmt.Errorf("randomhash: maxEjectionTime %s is below baseEjectionTime %s", cfg.max, cfg.base)
	}
	return cfg, nil
}

func parseDuration(s string, def time.Duration, field string) (time.Duration, error) {
	if s == "" {
		return def, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("randomhash: %s %q: want a positive duration such as \"1s\"", field, s)
	}
	return d, nil
}
