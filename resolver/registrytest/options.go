package registrytest

import (
	"time"

	"github.com/microgrpc/microgrpc/resolver"
)

// DefaultTimeout bounds each subtest of [Run] unless [WithTimeout] says
// otherwise.
const DefaultTimeout = 10 * time.Second

// Option declares what the registry under test can do, or how to test it.
// Without options the kit expects the strictest behaviour the
// [resolver.Registry] contract allows: reads that see a write once it
// returned, every field carried, and no TTL checks.
type Option func(*config)

type config struct {
	timeout time.Duration
	// ttl is the TTL the expiry test registers with; zero skips it.
	ttl time.Duration
	// abandon, when set, stops a registry from refreshing its own
	// registrations (as if its process died); nil means registrations
	// are refreshed only by calling Register again.
	abandon func(resolver.Registry)
	// eventual lets reads lag writes: the kit polls until its deadline.
	eventual bool
	// noEndpointMetadata skips Endpoint.Metadata in comparisons.
	noEndpointMetadata bool
}

func newConfig(opts []Option) config {
	c := config{timeout: DefaultTimeout}
	for _, o := range opts {
		o(&c)
	}
	return c
}

// WithTimeout bounds each subtest (default [DefaultTimeout]); raise it for
// a backend whose every call takes long.
func WithTimeout(d time.Duration) Option {
	return func(c *config) {
		if d > 0 {
			c.timeout = d
		}
	}
}

// WithTTL declares that the registry honours [resolver.WithTTL]: a
// registration that is not refreshed is gone within about its TTL, and
// watchers are told (Delete). min is the TTL the kit registers with: the
// shortest the registry honours (a registry counting whole seconds, like
// etcd's leases, needs at least a second). Without this option the expiry
// test is skipped.
//
// By default a registration is refreshed only by registering it again, as
// go-micro's heartbeats do; see [WithKeepAlive] for registries that
// refresh their own.
func WithTTL(min time.Duration) Option {
	return func(c *config) { c.ttl = min }
}

// WithKeepAlive declares that the registry refreshes its own registrations
// for as long as it is open (etcd keeps leases alive), so that a
// registration expires only once the process that made it is gone. The
// expiry test then registers through a second registry made by the
// newRegistry func given to [Run] (for the same subtest, so it must share
// the first one's backend: same server, same key prefix), checks that the
// registration outlives its TTL, calls abandon on that second registry,
// and expects the registration gone from the first within about its TTL.
// abandon must stop the refreshing without deregistering anything, as a
// crash would (for etcd: Close, which lets the leases expire).
//
// It only matters together with [WithTTL].
func WithKeepAlive(abandon func(resolver.Registry)) Option {
	return func(c *config) { c.abandon = abandon }
}

// WithEventualConsistency declares that reads may lag writes: a
// registration made by Register (or removed by Deregister) shows in
// GetService and ListServices some time after the call returns, as with
// mDNS, where a registry learns even its own nodes from the network. The
// kit then polls, until the subtest's deadline, instead of reading once.
// Without it, the kit expects a write to be visible as soon as it returned.
func WithEventualConsistency() Option {
	return func(c *config) { c.eventual = true }
}

// WithoutEndpointMetadata declares that the registry does not carry
// [resolver.Endpoint] Metadata (mDNS keeps endpoints' names and streaming
// flags only, to fit its TXT records); the kit then leaves it out of its
// comparisons. Everything else must still round-trip.
func WithoutEndpointMetadata() Option {
	return func(c *config) { c.noEndpointMetadata = true }
}
