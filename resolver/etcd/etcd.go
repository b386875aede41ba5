// Package etcd is the multi-host registry of microgrpc, on etcd v3.
//
// Each node is one key, <prefix>/<service>/<node-id> (prefix
// /micro/registry by default), attached to a lease whose TTL is the
// service's register TTL and kept alive while the registration lives. The
// value is etcd's own naming format, the JSON of an endpoints update
// ({"Op":0,"Addr":"host:port","Metadata":{...}}, node id, version, metadata
// and endpoints inside Metadata), so a grpc-go program using etcd's
// go.etcd.io/etcd/client/v3/naming/resolver can resolve microgrpc services
// with the target "etcd:///" + prefix + "/" + service (note the fourth
// slash: etcd's resolver drops one).
//
// # What it adds over etcd's naming package
//
//   - Registration never gives up: when the lease is lost (etcd restarted,
//     a long partition, the lease expired) or the key is deleted, the node
//     grants a new lease and puts its key again, with capped exponential
//     backoff, for as long as the registration lives; every loss and
//     recovery is logged.
//   - Watches never freeze: they start from the revision of a linearizable
//     read, and on compaction, a closed watch channel or any error they
//     re-list (emitting the differences) and watch again, backing off.
//   - A value under the prefix that does not decode is skipped with a log
//     line; it never breaks a watch or other services. A node whose key
//     someone overwrote puts its own value back, after a backoff that grows
//     while the overwrites go on, and watchers drop the node while its
//     value does not decode.
//   - Two live processes with one node id (a fixed server id, a reused pod
//     name) do not fight over the key: the one whose key another live
//     lease took logs one ERROR naming both addresses, leaves the key to
//     the other, and takes it back when the other deregisters or its
//     lease expires.
//   - Records written by etcd's own endpoints.Manager for plain grpc-go
//     servers ({"Op":0,"Addr":"host:port",...} under <prefix>/<service>/<id>)
//     are nodes too: service and id from the key, metadata when it is a
//     JSON object of strings.
//   - An unreachable etcd is an error that says so: reads without a
//     deadline are bounded (WithReadTimeout), and errors name etcd's
//     addresses and why they did not answer (connection refused, ...).
//
// # Scheme for plain grpc-go programs
//
// Importing this package registers the gRPC scheme "etcd": with it,
// grpc.NewClient("etcd:///greeter", ...) resolves microgrpc's "greeter"
// through etcd at $MICRO_REGISTRY_ADDRESS (default 127.0.0.1:2379), or at
// the target's authority: "etcd://10.0.0.5:2379/greeter". Close every
// ClientConn: the shared etcd client is closed with the last one.
package etcd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/microgrpc/microgrpc/internal/backoff"
	"github.com/microgrpc/microgrpc/resolver"
	"github.com/microgrpc/microgrpc/resolver/etcd/internal/wire"
)

// Name is the registry's name.
const Name = "etcd"

// ErrClosed is returned once the registry is closed.
var ErrClosed = errors.New("etcd registry: closed")

// Registry is an etcd-backed resolver.Registry. Close it when done.
type Registry struct {
	opts       options
	endpoints  []string // what the client dials, for error messages
	client     *clientv3.Client
	ownsClient bool
	kv         clientv3.KV

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex
	closed bool
	regs   map[string]*keeper // by key
}

var (
	_ resolver.Registry    = (*Registry)(nil)
	_ resolver.ListWatcher = (*Registry)(nil)
)

// NewRegistry connects to etcd and returns a registry.
func NewRegistry(opts ...Option) (*Registry, error) {
	o := defaultOptions()
	for _, opt := range opts {
		opt(&o)
	}
	if err := o.validate(); err != nil {
		return nil, err
	}
	r := &Registry{opts: o, client: o.client, regs: map[string]*keeper{}}
	if r.client == nil {
		eps := o.endpoints
		if len(eps) == 0 {
			eps = EndpointsFromEnv(os.LookupEnv)
		}
		if len(eps) == 0 {
			eps = []string{DefaultEndpoint}
		}
		cfg := clientv3.Config{
			Endpoints: eps, DialTimeout: o.dialTimeout, Username: o.username, Password: o.pass, TLS: o.tls,
			Logger: nopLogger(),
		}
		if o.creds != nil {
			// The client adds its DialOptions after its own: these win.
			cfg.DialOptions = []grpc.DialOption{grpc.WithTransportCredentials(o.creds)}
		}
		c, err := clientv3.New(cfg)
		if err != nil {
			return nil, fmt.Errorf("etcd registry: connect to %v: %w", eps, err)
		}
		r.client, r.ownsClient = c, true
	}
	r.endpoints = r.client.Endpoints()
	r.kv = r.client.KV
	if o.wrapKV != nil {
		r.kv = o.wrapKV(r.kv)
	}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	return r, nil
}

func (r *Registry) String() string { return Name }

func (r *Registry) serviceKey(name string) string { return r.opts.prefix + "/" + name + "/" }

func (r *Registry) nodeKey(name, id string) string { return r.serviceKey(name) + id }

// Register puts one key per node, on a lease of the TTL, and keeps it there
// until Deregister or Close. Registering a node again (a heartbeat) only
// checks that its keeper is alive, and announces changed data at once.
func (r *Registry) Register(ctx context.Context, s *resolver.Service, opts ...resolver.RegisterOption) error {
	if err := s.Validate(); err != nil {
		return err
	}
	ttl := resolver.NewRegisterOptions(opts...).TTL
	if ttl <= 0 {
		ttl = DefaultTTL
	}
	secs := int64((ttl + time.Second - 1) / time.Second)
	for _, n := range s.Nodes {
		value, err := wire.Encode(s, n)
		if err != nil {
			return fmt.Errorf("etcd registry: encode node %q: %w", n.ID, err)
		}
		if err := r.register(ctx, r.nodeKey(s.Name, n.ID), string(value), secs); err != nil {
			return err
		}
	}
	return nil
}

func (r *Registry) register(ctx context.Context, key, value string, ttl int64) error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return ErrClosed
	}
	if k, ok := r.regs[key]; ok {
		r.mu.Unlock()
		return k.refresh(ctx, value, ttl)
	}
	r.mu.Unlock()

	// First registration: put synchronously so that an unreachable etcd is
	// an error for the caller, then keep it alive in the background.
	lease, rev, err := r.put(ctx, key, value, ttl)
	if err != nil {
		return fmt.Errorf("etcd registry: register %s in etcd at %s: %w", key, strings.Join(r.endpoints, ","), r.explain(err))
	}
	k := &keeper{r: r, key: key, value: value, ttl: ttl, lease: lease, rev: rev, wake: make(chan struct{}, 1), done: make(chan struct{})}
	kctx, cancel := context.WithCancel(r.ctx)
	k.cancel = cancel
	r.mu.Lock()
	if old, ok := r.regs[key]; ok || r.closed {
		// Lost a race with a concurrent Register or Close.
		r.mu.Unlock()
		cancel()
		if ok {
			return old.refresh(ctx, value, ttl)
		}
		return ErrClosed
	}
	r.regs[key] = k
	r.wg.Add(1)
	r.mu.Unlock()
	go k.run(kctx)
	return nil
}

// put grants a lease and puts key on it.
// It returns the lease and the revision of the put.
func (r *Registry) put(ctx context.Context, key, value string, ttl int64) (clientv3.LeaseID, int64, error) {
	g, err := r.client.Grant(ctx, ttl)
	if err != nil {
		return 0, 0, fmt.Errorf("grant lease: %w", err)
	}
	resp, err := r.kv.Put(ctx, key, value, clientv3.WithLease(g.ID))
	if err != nil {
		return 0, 0, fmt.Errorf("put: %w", err)
	}
	return g.ID, resp.Header.Revision, nil
}

// Deregister deletes the nodes' keys and revokes their leases.
func (r *Registry) Deregister(ctx context.Context, s *resolver.Service) error {
	if s == nil {
		return fmt.Errorf("%w: nil service", resolver.ErrInvalidService)
	}
	if err := resolver.ValidateName(s.Name); err != nil {
		return err
	}
	var errs []error
	for _, n := range s.Nodes {
		key := r.nodeKey(s.Name, n.ID)
		r.mu.Lock()
		k := r.regs[key]
		delete(r.regs, key)
		r.mu.Unlock()
		var lease clientv3.LeaseID
		if k != nil {
			lease = k.stop()
		}
		if _, err := r.kv.Delete(ctx, key); err != nil {
			errs = append(errs, fmt.Errorf("etcd registry: deregister %s: %w", key, err))
			continue
		}
		if lease != 0 {
			r.client.Revoke(ctx, lease) // the key is gone already; this only tidies up
		}
	}
	return errors.Join(errs...)
}

// GetService lists the live nodes of a service with one linearizable read.
func (r *Registry) GetService(ctx context.Context, name string) ([]*resolver.Service, error) {
	if err := resolver.ValidateName(name); err != nil {
		return nil, err
	}
	ctx, cancel := r.readContext(ctx)
	defer cancel()
	resp, err := r.kv.Get(ctx, r.serviceKey(name), clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("etcd registry: get %q from etcd at %s: %w", name, strings.Join(r.endpoints, ","), r.explain(err))
	}
	var svcs []*resolver.Service
	for _, kv := range resp.Kvs {
		if s, ok := r.decode(kv.Key, kv.Value); ok {
			svcs = append(svcs, s)
		}
	}
	if len(svcs) == 0 {
		return nil, fmt.Errorf("%w: %q under %s in etcd", resolver.ErrNotFound, name, r.serviceKey(name))
	}
	return resolver.GroupByVersion(svcs), nil
}

// decode parses a value, logging and skipping what is not a node: a key
// that is not <prefix>/<service>/<id> (an id has no '/', as Register
// requires), or a value that does not decode.
func (r *Registry) decode(key, value []byte) (*resolver.Service, bool) {
	service, id, err := r.splitKey(string(key))
	var s *resolver.Service
	if err == nil {
		s, err = wire.Decode(value, service, id)
	}
	if err != nil {
		r.opts.logger.Warn("etcd registry: skipping a value that is not a node", "key", string(key), "error", err)
		return nil, false
	}
	return s, true
}

// splitKey returns the service and node id a key names.
func (r *Registry) splitKey(key string) (service, id string, err error) {
	rest, ok := strings.CutPrefix(key, r.opts.prefix+"/")
	if ok {
		service, id, ok = strings.Cut(rest, "/")
	}
	switch {
	case !ok || resolver.ValidateName(service) != nil || id == "":
		return "", "", fmt.Errorf("%w: key is not %s/<service>/<node id>", wire.ErrMalformed, r.opts.prefix)
	case strings.Contains(id, "/"):
		return "", "", fmt.Errorf("%w: node id %q contains '/'", wire.ErrMalformed, id)
	}
	return service, id, nil
}

// ListServices lists the services with at least one node, without nodes.
func (r *Registry) ListServices(ctx context.Context) ([]*resolver.Service, error) {
	ctx, cancel := r.readContext(ctx)
	defer cancel()
	resp, err := r.kv.Get(ctx, r.opts.prefix+"/", clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return nil, fmt.Errorf("etcd registry: list from etcd at %s: %w", strings.Join(r.endpoints, ","), r.explain(err))
	}
	names := map[string]bool{}
	for _, kv := range resp.Kvs {
		rest := strings.TrimPrefix(string(kv.Key), r.opts.prefix+"/")
		if name, _, ok := strings.Cut(rest, "/"); ok && resolver.ValidateName(name) == nil {
			names[name] = true
		}
	}
	var out []*resolver.Service
	for _, n := range slices.Sorted(maps.Keys(names)) {
		out = append(out, &resolver.Service{Name: n})
	}
	return out, nil
}

// Close stops keeping registrations alive (their leases then expire after
// their TTL, as if the process had died; Deregister first for an orderly
// exit), stops watchers, and closes the etcd client it made.
func (r *Registry) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	regs := r.regs
	r.regs = map[string]*keeper{}
	r.mu.Unlock()
	r.cancel()
	for _, k := range regs {
		k.stop()
	}
	r.wg.Wait()
	if r.ownsClient {
		return r.client.Close()
	}
	return nil
}

// readContext bounds a read whose context has no deadline.
func (r *Registry) readContext(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, r.opts.readTimeout)
}

// explain adds why etcd did not answer to an error that only says it did
// not in time: the etcd client hides the cause (connection refused, no
// route...) behind its own retries, so each endpoint is dialed once to
// find it.
func (r *Registry) explain(err error) error {
	if !errors.Is(err, context.DeadlineExceeded) && status.Code(err) != codes.Unavailable && status.Code(err) != codes.DeadlineExceeded {
		return err
	}
	var causes []string
	for _, ep := range r.endpoints {
		host, scheme := ep, ""
		if u, perr := url.Parse(ep); perr == nil && u.Host != "" {
			host, scheme = u.Host, u.Scheme
		}
		c, derr := net.DialTimeout("tcp", host, time.Second)
		if derr != nil {
			causes = append(causes, fmt.Sprintf("etcd at %s: %v", host, derr))
			continue
		}
		if herr := r.tryTLS(c, scheme, host); herr != nil {
			causes = append(causes, fmt.Sprintf("etcd at %s: TLS handshake: %v", host, herr))
			continue
		}
		c.Close()
		causes = append(causes, fmt.Sprintf("etcd at %s accepts connections but did not answer in time", host))
	}
	return fmt.Errorf("%w (%s)", err, strings.Join(causes, "; "))
}

// tryTLS shakes hands over c as the etcd client would (unless the
// endpoint is plain http:// or there is no TLS), so that a refused
// certificate, which the client reports only as a timeout, is named. It
// closes c when it fails.
func (r *Registry) tryTLS(c net.Conn, scheme, host string) error {
	if scheme == "http" || (r.opts.tls == nil && r.opts.creds == nil) {
		return nil
	}
	c.SetDeadline(time.Now().Add(time.Second))
	var err error
	if r.opts.creds != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, _, err = r.opts.creds.ClientHandshake(ctx, host, c)
		cancel()
	} else {
		cfg := r.opts.tls.Clone()
		if cfg.ServerName == "" {
			cfg.ServerName, _, _ = net.SplitHostPort(host)
		}
		err = tls.Client(c, cfg).Handshake()
	}
	if err != nil {
		c.Close()
	}
	return err
}

// retryPolicy is the delay between attempts to re-register or watch again.
var retryPolicy = backoff.Policy{Min: 100 * time.Millisecond, Max: MaxRetryBackoff}
