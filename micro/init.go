package micro

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"time"

	"github.com/microgrpc/microgrpc/internal/envconfig"
	"github.com/microgrpc/microgrpc/plugins"
	"github.com/microgrpc/microgrpc/plugins/builtin"
)

type initOptions struct {
	fs     *flag.FlagSet
	args   []string
	lookup envconfig.LookupFunc
}

// InitOption configures [Service.Init].
type InitOption func(*initOptions)

// WithFlagSet makes Init define and parse its flags on fs instead of
// flag.CommandLine.
func WithFlagSet(fs *flag.FlagSet) InitOption { return func(o *initOptions) { o.fs = fs } }

// WithArgs makes Init parse args instead of os.Args[1:].
func WithArgs(args []string) InitOption { return func(o *initOptions) { o.args = args } }

// WithEnv makes Init read the environment through lookup instead of
// os.LookupEnv.
func WithEnv(lookup func(string) (string, bool)) InitOption {
	return func(o *initOptions) { o.lookup = lookup }
}

// Init applies the operator's settings, go-micro style: the MICRO_*
// environment variables, then the command-line flags (--registry,
// --registry_address, --broker, --broker_address, --broker_ack_wait,
// --broker_replicas, --server_name,
// --server_version, --server_id, --server_address, --server_advertise,
// --server_metadata, --register_ttl, --register_interval,
// --client_request_timeout, --client_retries). Precedence, lowest first:
// built-in defaults < options given in code < environment < flags.
//
// Init defines its flags on flag.CommandLine (or the WithFlagSet set),
// next to the program's own, and parses it unless it was parsed already
// (then call DefineFlags before parsing); -h lists every flag with its
// environment name. Call it once, after
// NewService and before Run or Dial. An unknown plugin name or a malformed
// value is an error that says which setting and what is valid.
func (s *Service) Init(opts ...InitOption) error {
	o := initOptions{fs: flag.CommandLine, lookup: os.LookupEnv}
	for _, opt := range opts {
		opt(&o)
	}
	if o.args == nil && o.fs == flag.CommandLine {
		o.args = os.Args[1:]
	}
	if s.optErr != nil {
		return s.optErr
	}
	envconfig.Define(o.fs)
	if !o.fs.Parsed() {
		if err := o.fs.Parse(o.args); err != nil {
			return fmt.Errorf("micro: init: %w", err)
		}
		// Init parsed the command line, so nothing else will read what is
		// left: a stray word (a value whose flag lost its '=', a typo) must
		// not pass silently.
		if o.fs.NArg() > 0 {
			return fmt.Errorf("micro: init: unexpected argument %q: flags are -name=value; "+
				"a program that takes arguments parses its flags itself (DefineFlags, then flag.Parse, then Init)", o.fs.Arg(0))
		}
	}
	v := envconfig.Read(o.fs, o.lookup)
	// Options are fixed once the service is in use: everything after Init
	// reads them without a lock.
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.running || s.closed || s.used {
		return ErrInitAfterUse
	}
	return s.applyLocked(v)
}

// ErrInitAfterUse is returned by Init once the service has run, dialed,
// closed or made its broker: settings cannot change under connections, a
// server and a broker that use them (a second http broker would register
// its delivery service on the server twice).
var ErrInitAfterUse = errors.New("micro: Init after the service was used (Run, Dial, Conn, Close, or its broker was made: Broker, micro/pubsub): call Init first")

// DefineFlags defines microgrpc's flags on fs, for a program that parses
// its flags itself before NewService (to build a listener from its own
// flag, say); Init then reads the parsed values. It is idempotent.
func DefineFlags(fs *flag.FlagSet) { envconfig.Define(fs) }

// applyLocked sets the options that v holds. Caller must hold s.mu.
func (s *Service) applyLocked(v envconfig.Values) error {
	o := &s.opts
	strs := []struct {
		set envconfig.Setting
		dst *string
	}{
		{envconfig.ServerName, &o.name},
		{envconfig.ServerVersion, &o.version},
		{envconfig.ServerID, &o.id},
		{envconfig.ServerAddress, &o.address},
		{envconfig.ServerAdvertise, &o.advertise},
		{envconfig.BrokerToken, &o.brokerToken},
	}
	for _, st := range strs {
		if val, ok := v[st.set]; ok {
			*st.dst = val
		}
	}
	if _, ok := v[envconfig.ServerMetadata]; ok {
		md, err := v.Map(envconfig.ServerMetadata)
		if err != nil {
			return fmt.Errorf("micro: init: %w", err)
		}
		if o.metadata == nil {
			o.metadata = map[string]string{}
		}
		maps.Copy(o.metadata, md)
	}
	durs := []struct {
		set envconfig.Setting
		dst *time.Duration
	}{
		{envconfig.RegisterTTL, &o.registerTTL},
		{envconfig.RegisterInterval, &o.registerInterval},
		{envconfig.ClientRequestTimeout, &o.requestTimeout},
		{envconfig.BrokerAckWait, &o.brokerAckWait},
	}
	for _, d := range durs {
		val, ok, err := v.Duration(d.set)
		if err != nil {
			return fmt.Errorf("micro: init: %w", err)
		}
		if ok {
			*d.dst = val
		}
	}
	for _, f := range []struct {
		set envconfig.Setting
		dst *string
	}{
		{envconfig.TLSCertFile, &o.tls.CertFile},
		{envconfig.TLSKeyFile, &o.tls.KeyFile},
		{envconfig.TLSCAFile, &o.tls.CAFile},
	} {
		if val, ok := v[f.set]; ok {
			if s.server != nil && s.ownsServer() {
				return fmt.Errorf("micro: init: -%s given after Server() made the gRPC server: call Init first", f.set.Flag)
			}
			*f.dst = val
			s.tlsSrc, s.tlsErr = nil, nil
		}
	}
	if _, ok := v[envconfig.MDNSInterfaces]; ok {
		o.mdnsInterfaces = v.List(envconfig.MDNSInterfaces)
	}
	if b, ok, err := v.Bool(envconfig.BrokerInsecureToken); err != nil {
		return fmt.Errorf("micro: init: %w", err)
	} else if ok {
		o.brokerInsecureToken = b
	}
	if b, ok, err := v.Bool(envconfig.ServerLoadShedding); err != nil {
		return fmt.Errorf("micro: init: %w", err)
	} else if ok {
		if s.server != nil && s.ownsServer() && b != o.loadShedding {
			return fmt.Errorf("micro: init: -%s given after Server() made the gRPC server: call Init first", envconfig.ServerLoadShedding.Flag)
		}
		o.loadShedding = b
	}
	if b, ok, err := v.Bool(envconfig.ClientThrottling); err != nil {
		return fmt.Errorf("micro: init: %w", err)
	} else if ok {
		o.throttling = b
	}
	if n, ok, err := v.Int(envconfig.ClientRetries); err != nil {
		return fmt.Errorf("micro: init: %w", err)
	} else if ok {
		o.retries = &n
	}
	if n, ok, err := v.Int(envconfig.BrokerReplicas); err != nil {
		return fmt.Errorf("micro: init: %w", err)
	} else if ok {
		o.brokerReplicas = n
	}
	// Registry and broker switch when the operator named one or gave
	// addresses; addresses alone reconfigure the plugin already chosen.
	if err := s.applyRegistryLocked(v); err != nil {
		return err
	}
	return s.applyBrokerLocked(v)
}

// applyBrokerLocked makes the broker the settings name. Caller must hold
// s.mu.
func (s *Service) applyBrokerLocked(v envconfig.Values) error {
	name, named := v[envconfig.Broker]
	_, addressed := v[envconfig.BrokerAddress]
	_, tokened := v[envconfig.BrokerToken]
	_, tlsSet := v[envconfig.TLSCertFile]
	_, caSet := v[envconfig.TLSCAFile]
	_, ackWaitSet := v[envconfig.BrokerAckWait]
	_, replicasSet := v[envconfig.BrokerReplicas]
	if !named && !addressed && !tokened && !tlsSet && !caSet && !ackWaitSet && !replicasSet {
		return nil
	}
	if !named {
		name = s.opts.brokerName
		if s.brk != nil {
			name = s.brk.String()
		}
	}
	s.opts.broker = nil
	s.opts.brokerName = name
	if named || addressed {
		// Otherwise the addresses given in code stay: a token or an ack
		// wait alone does not move the broker.
		s.opts.brokerAddrs = v.List(envconfig.BrokerAddress)
	}
	s.brk, s.brkErr, s.ownsBroker = nil, nil, false
	// A wrong name fails here, at Init, and at every use after. The broker
	// itself is made on first use (brokerLocked), so that only a program
	// that can use it links its plugin.
	// http is the exception: its plugin comes with micro/pubsub, and a
	// service without pub/sub never makes it.
	if _, err := plugins.LookupBroker(name); err != nil && name != builtin.BrokerHTTP {
		s.brkErr = fmt.Errorf("micro: %w", err)
	}
	return s.brkErr
}

// applyRegistryLocked makes the registry the settings name. Caller must
// hold s.mu.
func (s *Service) applyRegistryLocked(v envconfig.Values) error {
	name, named := v[envconfig.Registry]
	_, addressed := v[envconfig.RegistryAddress]
	_, ifaces := v[envconfig.MDNSInterfaces]
	if !named && !addressed && !ifaces {
		return nil
	}
	if !named {
		name = s.opts.registryName
		if s.reg != nil {
			name = s.reg.String()
		}
	}
	if s.reg != nil && s.ownsRegistry {
		if c, ok := s.reg.(io.Closer); ok {
			c.Close()
		}
	}
	s.opts.registry = nil
	s.opts.registryName = name
	s.opts.registryAddrs = v.List(envconfig.RegistryAddress)
	s.reg, s.regErr, s.ownsRegistry = nil, nil, false
	// Make it now so that a wrong name fails here, at Init.
	_, err := s.registryLocked()
	return err
}
