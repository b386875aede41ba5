package resolver

import (
	"maps"

	grpcresolver "google.golang.org/grpc/resolver"
)

// NodeInfo is what a balancer may learn about the node behind a
// [grpcresolver.Endpoint]: the registry's node id, the service version the
// node runs, and the node's metadata (service metadata merged in, the node's
// own keys winning), and the health service name it answers for
// ([Node.HealthService]). Treat it as read-only.
type NodeInfo struct {
	ID            string
	Service       string
	Version       string
	Metadata      map[string]string
	HealthService string
}

// Equal lets grpc-go compare attributes; it reports whether o describes the
// same node in the same state.
func (n *NodeInfo) Equal(o any) bool {
	m, ok := o.(*NodeInfo)
	if !ok || n == nil || m == nil {
		return ok && n == m
	}
	return n.ID == m.ID && n.Service == m.Service && n.Version == m.Version && n.HealthService == m.HealthService &&
		maps.Equal(n.Metadata, m.Metadata)
}

type nodeInfoKey struct{}

// SetNodeInfo returns a copy of ep carrying info.
func SetNodeInfo(ep grpcresolver.Endpoint, info *NodeInfo) grpcresolver.Endpoint {
	ep.Attributes = ep.Attributes.WithValue(nodeInfoKey{}, info)
	return ep
}

// NodeFromEndpoint returns the node information attached to ep by this
// package's resolver, or nil when ep did not come from it.
func NodeFromEndpoint(ep grpcresolver.Endpoint) *NodeInfo {
	n, _ := ep.Attributes.Value(nodeInfoKey{}).(*NodeInfo)
	return n
}

// NodeFromAddress is [NodeFromEndpoint] for the legacy Address form, for
// balancers built on balancer/base.
func NodeFromAddress(a grpcresolver.Address) *NodeInfo {
	//lint:ignore SA1019 balancer/base policies see only the Addresses list; grpc-go deprecates the field inside Endpoints, where this package sets NodeInfo on the Endpoint.
	n, _ := a.BalancerAttributes.Value(nodeInfoKey{}).(*NodeInfo)
	return n
}

// HealthCheck is what a balancer needs to check, on a SubConn of one
// address, that the node serves its service: the node's id and the health
// service name its record gives ([Node.HealthService]; empty: none). It
// rides in the address's own Attributes, which SubConns see, and changes
// only with the node's record, not with its metadata (a change would make
// grpc-go reconnect).
type HealthCheck struct {
	NodeID  string
	Service string
}

type healthCheckKey struct{}

// SetHealthCheck returns a copy of a carrying h, for resolvers of other
// registries that want balancer/randomhash's per-node checks.
func SetHealthCheck(a grpcresolver.Address, h HealthCheck) grpcresolver.Address {
	a.Attributes = a.Attributes.WithValue(healthCheckKey{}, h)
	return a
}

// HealthCheckFromAddress returns the health check this package's resolver
// attached to a, if any.
func HealthCheckFromAddress(a grpcresolver.Address) (HealthCheck, bool) {
	h, ok := a.Attributes.Value(healthCheckKey{}).(HealthCheck)
	return h, ok
}
