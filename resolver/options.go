package resolver

import (
	"log/slog"
	"time"
)

// Defaults of the resolver built by [NewBuilder].
const (
	// DefaultGracePeriod is how long the last good node list is kept while
	// the registry fails or the service has no nodes.
	DefaultGracePeriod = 10 * time.Second
	// DefaultCoalesceWindow is how long the resolver waits after a change
	// for more changes before it pushes one state for all of them.
	DefaultCoalesceWindow = 20 * time.Millisecond
	// DefaultInitialWait is how long a new resolver waits for the first
	// nodes before it reports that there are none.
	DefaultInitialWait = time.Second
	// DefaultMaxBackoff caps the delay between retries after a registry
	// error.
	DefaultMaxBackoff = 30 * time.Second
)

type builderOptions struct {
	scheme     string
	grace      time.Duration
	initial    time.Duration
	coalesce   time.Duration
	minBackoff time.Duration
	maxBackoff time.Duration
	logger     *slog.Logger
}

func defaultBuilderOptions(reg Registry) builderOptions {
	return builderOptions{
		scheme:     reg.String(),
		grace:      DefaultGracePeriod,
		initial:    DefaultInitialWait,
		coalesce:   DefaultCoalesceWindow,
		minBackoff: 100 * time.Millisecond,
		maxBackoff: DefaultMaxBackoff,
		logger:     slog.Default(),
	}
}

// BuilderOption configures [NewBuilder].
type BuilderOption func(*builderOptions)

// WithScheme sets the URI scheme the builder answers to; the default is the
// registry's String().
func WithScheme(scheme string) BuilderOption {
	return func(o *builderOptions) { o.scheme = scheme }
}

// WithGracePeriod sets how long the last good node list is kept when the
// registry fails or the service's node list goes empty, before the resolver
// reports an error. Zero reports at once.
func WithGracePeriod(d time.Duration) BuilderOption {
	return func(o *builderOptions) { o.grace = max(d, 0) }
}

// WithInitialWait sets how long a new resolver waits for the service's
// first nodes before it reports that there are none; calls made meanwhile
// wait rather than fail. Zero reports at once.
func WithInitialWait(d time.Duration) BuilderOption {
	return func(o *builderOptions) { o.initial = max(d, 0) }
}

// WithCoalesceWindow sets how long the resolver gathers further registry
// events after one arrives, so that a burst yields one state update.
func WithCoalesceWindow(d time.Duration) BuilderOption {
	return func(o *builderOptions) { o.coalesce = max(d, 0) }
}

// WithBackoff sets the first and the longest delay between retries after the
// registry failed.
func WithBackoff(minDelay, maxDelay time.Duration) BuilderOption {
	return func(o *builderOptions) {
		if minDelay > 0 {
			o.minBackoff = minDelay
		}
		if maxDelay >= o.minBackoff {
			o.maxBackoff = maxDelay
		}
	}
}

// WithLogger sets the logger for registry failures and recoveries; the
// default is slog.Default().
func WithLogger(l *slog.Logger) BuilderOption {
	return func(o *builderOptions) {
		if l != nil {
			o.logger = l
		}
	}
}
