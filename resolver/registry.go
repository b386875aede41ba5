package resolver

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// ErrNotFound is returned by [Registry.GetService] when no node of the
// service is registered.
var ErrNotFound = errors.New("resolver: service not found")

// ErrInvalidService wraps every validation failure of a [Service] handed to
// [Registry.Register] or [Registry.Deregister].
var ErrInvalidService = errors.New("resolver: invalid service")

// Service is one version of a named service and the nodes that run it.
//
// Register and Deregister take a Service with exactly the nodes being
// (de)registered, usually one. GetService and ListServices return one Service
// per version, each with all its live nodes, as go-micro does.
type Service struct {
	// Name is the service name clients dial. It must not be empty and must
	// not contain '/' (it is one path segment of a target and of a key).
	Name string
	// Version is the version its nodes run, e.g. "v1.2.0". It may be empty.
	Version string
	// Metadata describes the service (not one node of it).
	Metadata map[string]string
	// Endpoints are the RPC methods the service offers.
	Endpoints []Endpoint
	// Nodes are the running instances.
	Nodes []Node
}

// Node is one running instance of a service.
type Node struct {
	// ID identifies the node among all nodes of its service; it must be
	// unique and must not contain '/'.
	ID string
	// Address is where the node accepts connections, "host:port".
	Address string
	// Metadata describes the node (zone, build, broker address, ...).
	Metadata map[string]string
	// HealthService, when set, is the grpc.health.v1 service name under
	// which the node reports whether it serves this service; micro sets it
	// to the service's name. Clients (balancer/randomhash) then send the
	// node calls only while it answers SERVING for that name, so a record
	// left pointing at some other gRPC server (its port reused) is never
	// called. Empty, as in records other software writes (etcd's
	// endpoints.Manager), means only the whole server's health ("") is
	// checked.
	HealthService string
}

// Endpoint describes one RPC method of a service.
type Endpoint struct {
	// Name is the full method name as gRPC sends it on the wire, for example
	// "/greeter.Greeter/Hello".
	Name string
	// ClientStreaming is true when the client sends a stream of messages.
	ClientStreaming bool
	// ServerStreaming is true when the server sends a stream of messages.
	ServerStreaming bool
	// Metadata is free-form information about the method.
	Metadata map[string]string
}

// Clone returns a deep copy of s, so a registry never shares maps or slices
// with its callers.
func (s *Service) Clone() *Service {
	if s == nil {
		return nil
	}
	c := &Service{Name: s.Name, Version: s.Version, Metadata: maps.Clone(s.Metadata)}
	if s.Endpoints != nil {
		c.Endpoints = make([]Endpoint, len(s.Endpoints))
		for i, e := range s.Endpoints {
			e.Metadata = maps.Clone(e.Metadata)
			c.Endpoints[i] = e
		}
	}
	if s.Nodes != nil {
		c.Nodes = make([]Node, len(s.Nodes))
		for i, n := range s.Nodes {
			n.Metadata = maps.Clone(n.Metadata)
			c.Nodes[i] = n
		}
	}
	return c
}

// ValidateName reports whether name can be used as a service name.
func ValidateName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%w: empty service name", ErrInvalidService)
	case strings.Contains(name, "/"):
		return fmt.Errorf("%w: service name %q contains '/'", ErrInvalidService, name)
	}
	return nil
}

// Validate checks what every registry requires of a Service passed to
// Register: a valid name and at least one node, each with an id (without
// '/') and an address.
func (s *Service) Validate() error {
	if s == nil {
		return fmt.Errorf("%w: nil service", ErrInvalidService)
	}
	if err := ValidateName(s.Name); err != nil {
		return err
	}
	if len(s.Nodes) == 0 {
		return fmt.Errorf("%w: service %q has no nodes", ErrInvalidService, s.Name)
	}
	for _, n := range s.Nodes {
		switch {
		case n.ID == "":
			return fmt.Errorf("%w: service %q: node with empty id", ErrInvalidService, s.Name)
		case strings.Contains(n.ID, "/"):
			return fmt.Errorf("%w: service %q: node id %q contains '/'", ErrInvalidService, s.Name, n.ID)
		case n.Address == "":
			return fmt.Errorf("%w: service %q: node %q has no address", ErrInvalidService, s.Name, n.ID)
		}
	}
	return nil
}

// Registry is a service-discovery backend.
//
// Implementations must be safe for concurrent use. Every method that talks to
// a backend honours ctx. Returned services are the caller's to keep: a
// registry never modifies them afterwards.
type Registry interface {
	// Register announces the nodes of s. Registering a node that is already
	// registered refreshes it: its TTL starts again and changed metadata,
	// version or endpoints replace the old ones (and are announced to
	// watchers as an update).
	Register(ctx context.Context, s *Service, opts ...RegisterOption) error
	// Deregister removes the nodes of s at once. Removing an unknown node is
	// not an error.
	Deregister(ctx context.Context, s *Service) error
	// GetService returns the live nodes of the named service, one Service per
	// version. It returns an error wrapping ErrNotFound when there are none.
	GetService(ctx context.Context, name string) ([]*Service, error)
	// ListServices returns every known service, without nodes when the
	// backend cannot list them cheaply.
	ListServices(ctx context.Context) ([]*Service, error)
	// Watch returns a Watcher of changes to the nodes of one service (see
	// WatchService) or of all services. The watcher stops when ctx is done or
	// Stop is called.
	Watch(ctx context.Context, opts ...WatchOption) (Watcher, error)
	// String names the backend ("memory", "mdns", "etcd"); it is used in
	// logs and errors, and as the default gRPC scheme of NewBuilder.
	String() string
}

// ListWatcher is implemented by registries that can list a service and
// watch it from that listing in one read. [Follower] (and so the gRPC
// resolver and the http broker) use it when a registry has it, instead of
// Watch followed by GetService, which reads and decodes the service twice:
// for a service of a thousand nodes that doubled the time to a new
// client's first call.
type ListWatcher interface {
	// ListWatch returns the live nodes of the named service, one Service
	// per version (none, not an error, when there are none), and a Watcher
	// of the changes after them. The watcher stops when ctx is done or
	// Stop is called.
	ListWatch(ctx context.Context, name string) ([]*Service, Watcher, error)
}

// Action says what happened to the nodes of an [Event].
type Action string

// The actions of an [Event].
const (
	// Create: the nodes are new.
	Create Action = "create"
	// Update: the nodes were already known; their data changed or their
	// registration was refreshed.
	Update Action = "update"
	// Delete: the nodes are gone (deregistered or expired).
	Delete Action = "delete"
)

// Event is one change seen by a [Watcher]: the nodes of Service, which all
// share the Service's name and version, were created, updated or deleted.
type Event struct {
	Action    Action
	Service   *Service
	Timestamp time.Time
}

// Watcher yields registry changes in the order they happened.
type Watcher interface {
	// Next blocks until the next event, and returns an error once the watcher
	// is stopped (ErrWatcherStopped) or its context is done, or when the
	// backend failed in a way the watcher cannot recover from; after an
	// error the caller must Stop it and may Watch again. Next is not safe for
	// concurrent use.
	Next() (*Event, error)
	// Stop releases the watcher. It is idempotent and may be called from any
	// goroutine, also while Next is blocked (Next then returns).
	Stop()
}

// ErrWatcherStopped is returned by [Watcher.Next] after Stop.
var ErrWatcherStopped = errors.New("resolver: watcher stopped")

// RegisterOptions are the settings of one [Registry.Register] call. They are
// exported so that registries outside this module can read them.
type RegisterOptions struct {
	// TTL is how long the registration lives without a refresh; zero means
	// until deregistered.
	TTL time.Duration
}

// RegisterOption sets a [RegisterOptions] field.
type RegisterOption func(*RegisterOptions)

// WithTTL sets the registration's time to live.
func WithTTL(ttl time.Duration) RegisterOption {
	return func(o *RegisterOptions) { o.TTL = ttl }
}

// NewRegisterOptions applies opts to the zero RegisterOptions.
func NewRegisterOptions(opts ...RegisterOption) RegisterOptions {
	var o RegisterOptions
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

// WatchOptions are the settings of one [Registry.Watch] call.
type WatchOptions struct {
	// Service limits the watch to one service name; empty means all.
	Service string
}

// WatchOption sets a [WatchOptions] field.
type WatchOption func(*WatchOptions)

// WatchService limits a watch to the named service.
func WatchService(name string) WatchOption {
	return func(o *WatchOptions) { o.Service = name }
}

// NewWatchOptions applies opts to the zero WatchOptions.
func NewWatchOptions(opts ...WatchOption) WatchOptions {
	var o WatchOptions
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

// SortNodes orders nodes by id; registries use it so that results are
// deterministic.
func SortNodes(nodes []Node) {
	slices.SortFunc(nodes, func(a, b Node) int { return strings.Compare(a.ID, b.ID) })
}

// GroupByVersion merges services of one name (typically one node each)
// into one Service per version, nodes sorted by id and versions in order,
// as GetService returns them. Registries outside this module can use it.
func GroupByVersion(svcs []*Service) []*Service {
	byVersion := map[string]*Service{}
	for _, s := range svcs {
		v, ok := byVersion[s.Version]
		if !ok {
			v = s.Clone()
			v.Nodes = nil
			byVersion[s.Version] = v
		}
		for _, n := range s.Nodes {
			n.Metadata = maps.Clone(n.Metadata)
			v.Nodes = append(v.Nodes, n)
		}
	}
	out := make([]*Service, 0, len(byVersion))
	for _, k := range slices.Sorted(maps.Keys(byVersion)) {
		SortNodes(byVersion[k].Nodes)
		out = append(out, byVersion[k])
	}
	return out
}
