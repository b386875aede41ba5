// Package envconfig is the one place where microgrpc's command-line flags
// and MICRO_* environment variables are named, documented and read.
//
// Every setting has a flag (go-micro's name) and an environment variable.
// Precedence, lowest first: built-in defaults < options given in code <
// environment < command-line flags, so an operator can always override
// what the program was built with.
package envconfig

import (
	"errors"
	"flag"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Setting is one knob that an operator can set by flag or environment.
type Setting struct {
	// Flag is the command-line flag name, without dashes.
	Flag string
	// Env is the environment variable name.
	Env string
	// Usage says what it does (shown by -h, followed by the env name).
	Usage string
	// Default says what applies when neither flag nor environment is set
	// (shown by -h); the flag's own default stays empty, so that a flag
	// given on the command line can be told from one that was not.
	Default string
}

// The settings, in the order -h lists them.
var (
	Registry             = Setting{"registry", "MICRO_REGISTRY", "registry plugin: mdns, etcd, memory, or a registered third-party name", "mdns"}
	RegistryAddress      = Setting{"registry_address", "MICRO_REGISTRY_ADDRESS", "comma-separated registry addresses, e.g. 127.0.0.1:2379", "the plugin's own: etcd 127.0.0.1:2379"}
	MDNSInterfaces       = Setting{"mdns_interfaces", "MICRO_MDNS_INTERFACES", "comma-separated network interfaces mDNS announces and browses on", "every up, multicast-capable interface"}
	Broker               = Setting{"broker", "MICRO_BROKER", "broker plugin: http, nats, jetstream, memory", "http"}
	BrokerToken          = Setting{"broker_token", "MICRO_BROKER_TOKEN", "shared secret publishers present to subscribers (http broker without mutual TLS; the NATS token)", "none"}
	BrokerInsecureToken  = Setting{"broker_insecure_token", "MICRO_BROKER_INSECURE_TOKEN", "true: the http broker may send the broker token without TLS", "false"}
	BrokerAddress        = Setting{"broker_address", "MICRO_BROKER_ADDRESS", "comma-separated broker addresses, e.g. nats://127.0.0.1:4222 (several: the servers of one NATS cluster, any of which will do)", "http: any free port; nats, jetstream: nats://127.0.0.1:4222"}
	BrokerAckWait        = Setting{"broker_ack_wait", "MICRO_BROKER_ACK_WAIT", "jetstream: how long a delivery may go unanswered before it comes again elsewhere (a subscriber that died); handlers that run longer are reported in progress (duration, or whole seconds)", "5s"}
	BrokerReplicas       = Setting{"broker_replicas", "MICRO_BROKER_REPLICAS", "jetstream: copies of each stream the broker makes; 1 on a single server, 3 on a cluster of 3 or more", "1"}
	ServerName           = Setting{"server_name", "MICRO_SERVER_NAME", "name the service registers under", "the name given in code"}
	ServerVersion        = Setting{"server_version", "MICRO_SERVER_VERSION", "version announced with the node", "none"}
	ServerID             = Setting{"server_id", "MICRO_SERVER_ID", "node id", "name and a random suffix"}
	ServerAddress        = Setting{"server_address", "MICRO_SERVER_ADDRESS", "address to listen on, e.g. :8080", ":0, any free port on every interface"}
	ServerAdvertise      = Setting{"server_advertise", "MICRO_SERVER_ADVERTISE", "address announced in the registry", "the listener's, with a routable IP"}
	ServerMetadata       = Setting{"server_metadata", "MICRO_SERVER_METADATA", "node metadata as k=v pairs, comma-separated", "none"}
	ServerLoadShedding   = Setting{"server_load_shedding", "MICRO_SERVER_LOAD_SHEDDING", "false turns off adaptive load shedding: refusing new calls at once, for a retry on another node, when the calls in flight reach an adaptive limit", "true"}
	RegisterTTL          = Setting{"register_ttl", "MICRO_REGISTER_TTL", "registration TTL (duration, or whole seconds)", "30s"}
	RegisterInterval     = Setting{"register_interval", "MICRO_REGISTER_INTERVAL", "re-registration interval (duration, or whole seconds)", "10s"}
	ClientRequestTimeout = Setting{"client_request_timeout", "MICRO_CLIENT_REQUEST_TIMEOUT", "default timeout of client calls (duration, or whole seconds)", "none: the caller's context"}
	ClientThrottling     = Setting{"client_throttling", "MICRO_CLIENT_THROTTLING", "false turns off client-side adaptive throttling: refusing some calls locally while a service refuses most of them", "true"}
	ClientRetries        = Setting{"client_retries", "MICRO_CLIENT_RETRIES", "retries of a failed call on another node (0 turns retries off)", "2"}
	TLSCertFile          = Setting{"tls_cert_file", "MICRO_TLS_CERT_FILE", "PEM certificate the service serves and presents as a client; turns TLS on", "none: plaintext"}
	TLSKeyFile           = Setting{"tls_key_file", "MICRO_TLS_KEY_FILE", "PEM key of the certificate", "none"}
	TLSCAFile            = Setting{"tls_ca_file", "MICRO_TLS_CA_FILE", "PEM CA bundle: servers are verified against it, and servers require client certificates signed by it (mutual TLS)", "none: the system's roots, no client certificates"}
)

// CommandLogLevel is the micro command's own setting (not a service's, so
// not in All): how much the command logs.
var CommandLogLevel = Setting{"", "MICRO_LOG_LEVEL", "how much the micro command logs: debug, info, warn or error", "error"}

// All is every setting.
var All = []Setting{
	Registry, RegistryAddress, MDNSInterfaces, Broker, BrokerAddress, BrokerToken, BrokerInsecureToken, BrokerAckWait, BrokerReplicas,
	ServerName, ServerVersion, ServerID, ServerAddress, ServerAdvertise, ServerMetadata, ServerLoadShedding,
	RegisterTTL, RegisterInterval, ClientRequestTimeout, ClientRetries, ClientThrottling,
	TLSCertFile, TLSKeyFile, TLSCAFile,
}

// Help is the setting's -h text: what it does, its environment variable
// and its default.
func (s Setting) Help() string {
	return fmt.Sprintf("%s (env %s; default: %s)", s.Usage, s.Env, s.Default)
}

// Lookup returns the setting's environment variable, when set and not
// empty. Packages that read their own setting outside micro (the etcd
// resolver's scheme, the mDNS registry) read it through here.
func (s Setting) Lookup(lookup LookupFunc) (string, bool) {
	v, ok := lookup(s.Env)
	return v, ok && v != ""
}

// SplitList splits a comma-separated value, trimming items and dropping
// empty ones.
func SplitList(v string) []string {
	var out []string
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// Values are the settings an operator gave, by setting; absent ones are
// missing from the map.
type Values map[Setting]string

// LookupFunc reads an environment variable (os.LookupEnv).
type LookupFunc func(string) (string, bool)

// Define adds a string flag for every setting to fs, unless fs already has
// a flag of that name (Define was called before, or the program defined its
// own, which then counts as ours). It is idempotent.
func Define(fs *flag.FlagSet) {
	for _, s := range All {
		if fs.Lookup(s.Flag) != nil {
			continue
		}
		fs.String(s.Flag, "", s.Help())
	}
}

// Read returns what the environment and the flags set: the environment
// first, then every setting's flag that was given on the command line
// (fs.Visit), which wins. fs must be parsed.
func Read(fs *flag.FlagSet, lookup LookupFunc) Values {
	v := Values{}
	for _, s := range All {
		if e, ok := s.Lookup(lookup); ok {
			v[s] = e
		}
	}
	byFlag := map[string]Setting{}
	for _, s := range All {
		byFlag[s.Flag] = s
	}
	fs.Visit(func(f *flag.Flag) {
		if s, ok := byFlag[f.Name]; ok {
			v[s] = f.Value.String()
		}
	})
	return v
}

// ErrInvalid wraps every malformed value.
var ErrInvalid = errors.New("envconfig: invalid value")

// Duration parses a duration setting: a Go duration ("30s") or whole
// seconds ("30"), as go-micro accepted.
func (v Values) Duration(s Setting) (time.Duration, bool, error) {
	raw, ok := v[s]
	if !ok {
		return 0, false, nil
	}
	if n, err := strconv.Atoi(raw); err == nil {
		if n < 0 {
			return 0, true, fmt.Errorf("%w: %s/-%s %q: negative", ErrInvalid, s.Env, s.Flag, raw)
		}
		return time.Duration(n) * time.Second, true, nil
	}
	d, err := time.ParseDuration(raw)
	if err != nil || d < 0 {
		return 0, true, fmt.Errorf("%w: %s/-%s %q: want a duration like 30s or whole seconds", ErrInvalid, s.Env, s.Flag, raw)
	}
	return d, true, nil
}

// Bool parses a boolean setting ("true", "false", "1", "0", as
// strconv.ParseBool).
func (v Values) Bool(s Setting) (bool, bool, error) {
	raw, ok := v[s]
	if !ok {
		return false, false, nil
	}
	b, err := strconv.ParseBool(raw)
	if err != nil {
		return false, true, fmt.Errorf("%w: %s/-%s %q: want true or false", ErrInvalid, s.Env, s.Flag, raw)
	}
	return b, true, nil
}

// Int parses a non-negative integer setting.
func (v Values) Int(s Setting) (int, bool, error) {
	raw, ok := v[s]
	if !ok {
		return 0, false, nil
	}
	n, err := strconv.Atoi(raw)
	if err != nil || n < 0 {
		return 0, true, fmt.Errorf("%w: %s/-%s %q: want a non-negative integer", ErrInvalid, s.Env, s.Flag, raw)
	}
	return n, true, nil
}

// List splits a comma-separated setting, dropping empty items.
func (v Values) List(s Setting) []string { return SplitList(v[s]) }

// Map parses "k=v,k2=v2".
func (v Values) Map(s Setting) (map[string]string, error) {
	out := map[string]string{}
	for _, kv := range v.List(s) {
		k, val, ok := strings.Cut(kv, "=")
		if !ok || strings.TrimSpace(k) == "" {
			return nil, fmt.Errorf("%w: %s/-%s item %q: want key=value", ErrInvalid, s.Env, s.Flag, kv)
		}
		out[strings.TrimSpace(k)] = strings.TrimSpace(val)
	}
	return out, nil
}
