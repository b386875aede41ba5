package micro

import "github.com/microgrpc/microgrpc/balancer/randomhash"

// serviceConfig selects go-micro's selector: random (or hashed) balancing,
// retry of UNAVAILABLE on another node, client health checks.
func (s *Service) serviceConfig() string {
	var opts []randomhash.ConfigOption
	if s.opts.retries != nil {
		opts = append(opts, randomhash.WithMaxAttempts(*s.opts.retries+1))
	}
	return randomhash.ServiceConfig(opts...)
}
