package mdns

import (
	"log/slog"
	"net"
	"os"
	"time"

	"github.com/microgrpc/microgrpc/internal/envconfig"
)

// Defaults.
const (
	// DefaultDomain is the mDNS domain.
	DefaultDomain = "local."
	// ServiceType is the DNS-SD service type every microgrpc node is
	// announced under; the service name travels in TXT.
	ServiceType = "_microgrpc._tcp"
	// DefaultQueryInterval is how often the browser asks every node to
	// answer again. A node is expired when it has not answered for its TTL.
	DefaultQueryInterval = 2 * time.Second
	// DefaultTTL is the liveness TTL of a registration that has none.
	DefaultTTL = 30 * time.Second
	// MaxTTL is the longest liveness TTL the browser accepts from an
	// announcement, twice DefaultTTL: a node claiming more is kept as if
	// it had said MaxTTL (or four query intervals, when that is longer).
	// Nodes that answer are refreshed at every query, so this only bounds
	// how long a node that went silent, or one announced once by a
	// stranger, stays in the cache.
	MaxTTL = 2 * DefaultTTL
)

// EnvInterfaces names the interfaces to use, comma-separated (default:
// every up, multicast-capable interface).
const EnvInterfaces = "MICRO_MDNS_INTERFACES"

type options struct {
	ifaceNames    []string
	domain        string
	queryInterval time.Duration
	maxTTL        time.Duration // MaxTTL; tests shorten it
	logger        *slog.Logger
}

func defaultOptions() options {
	o := options{domain: DefaultDomain, queryInterval: DefaultQueryInterval, maxTTL: MaxTTL, logger: slog.Default()}
	if v, ok := envconfig.MDNSInterfaces.Lookup(os.LookupEnv); ok {
		o.ifaceNames = envconfig.SplitList(v)
	}
	return o
}

// Option configures NewRegistry.
type Option func(*options)

// WithInterfaces names the network interfaces to announce and browse on;
// no names keeps the default.
func WithInterfaces(names ...string) Option {
	return func(o *options) {
		if len(names) > 0 {
			o.ifaceNames = names
		}
	}
}

// WithDomain sets the mDNS domain (default "local.").
func WithDomain(d string) Option { return func(o *options) { o.domain = d } }

// WithQueryInterval sets how often the browser re-queries; keep it well
// below the nodes' TTL.
func WithQueryInterval(d time.Duration) Option {
	return func(o *options) {
		if d > 0 {
			o.queryInterval = d
		}
	}
}

// WithLogger sets the logger.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) {
		if l != nil {
			o.logger = l
		}
	}
}

// interfaces resolves the chosen interfaces: the named ones, or every up,
// multicast-capable one.
func (o *options) interfaces() ([]net.Interface, error) {
	if len(o.ifaceNames) > 0 {
		var out []net.Interface
		for _, n := range o.ifaceNames {
			ifc, err := net.InterfaceByName(n)
			if err != nil {
				return nil, err
			}
			out = append(out, *ifc)
		}
		return out, nil
	}
	all, err := net.Interfaces()
	if err != nil {
		return nil, err
	}
	var out []net.Interface
	for _, ifc := range all {
		if ifc.Flags&net.FlagUp != 0 && ifc.Flags&net.FlagMulticast != 0 {
			out = append(out, ifc)
		}
	}
	return out, nil
}
