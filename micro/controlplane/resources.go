package controlplane

import (
	"maps"
	"net"
	"slices"
	"strconv"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/microgrpc/microgrpc/balancer/randomhash"
	"github.com/microgrpc/microgrpc/resolver"
)

// Node metadata the assignment reads.
const (
	// MetadataZone is the node metadata key of its zone: nodes of one zone
	// form one locality of the assignment.
	MetadataZone = "zone"
	// MetadataWeight is the node metadata key of its load-balancing weight,
	// a whole number from 1; a node without one weighs 1.
	MetadataWeight = "weight"
)

// VersionCluster is the name of the cluster (and of its assignment) of the
// nodes of service that run version; the cluster of all its nodes is
// named after the service itself. Service names hold no '/', so the two
// never collide.
func VersionCluster(service, version string) string { return service + "/" + version }

// resources are the xDS resources of one service, by name.
type resources struct {
	listeners, routes, clusters, assignments map[string]types.Resource
}

// nodeHealth reports whether a node (by id) failed its health check.
type nodeHealth func(id string) (unhealthy bool)

// build makes the resources of service from its versions (as
// Follower.Services returns them).
func (cp *ControlPlane) build(service string, versions []*resolver.Service, unhealthy nodeHealth) resources {
	r := resources{
		listeners:   map[string]types.Resource{service: apiListener(service)},
		routes:      map[string]types.Resource{},
		clusters:    map[string]types.Resource{service: edsCluster(service)},
		assignments: map[string]types.Resource{},
	}
	var all []resolver.Node
	var present []string // versions with nodes
	for _, s := range versions {
		all = append(all, s.Nodes...)
		if s.Version == "" || len(s.Nodes) == 0 {
			continue
		}
		present = append(present, s.Version)
		name := VersionCluster(service, s.Version)
		r.clusters[name] = edsCluster(name)
		r.assignments[name] = cp.assignment(name, s.Nodes, unhealthy)
	}
	r.assignments[service] = cp.assignment(service, all, unhealthy)
	r.routes[service] = cp.routeConfig(service, present)
	return r
}

// adsSource says "over the same ADS stream".
func adsSource() *corev3.ConfigSource {
	return &corev3.ConfigSource{
		ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
		ResourceApiVersion:    corev3.ApiVersion_V3,
	}
}

// apiListener is the Listener a proxyless client asks for when it dials
// xds:///service: an API listener whose HTTP connection manager takes its
// routes from the RouteConfiguration of the same name.
func apiListener(service string) *listenerv3.Listener {
	router, err := anypb.New(&routerv3.Router{})
	if err != nil {
		panic(err) // a well-formed message always marshals
	}
	hcm, err := anypb.New(&hcmv3.HttpConnectionManager{
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{RouteConfigName: service, ConfigSource: adsSource()}},
		HttpFilters: []*hcmv3.HttpFilter{{
			Name:       "envoy.filters.http.router",
			ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: router},
		}},
	})
	if err != nil {
		panic(err)
	}
	return &listenerv3.Listener{Name: service, ApiListener: &listenerv3.ApiListener{ApiListener: hcm}}
}

// routeConfig routes calls that carry the version header to the nodes of
// that version, and the others to every node, or by the weights configured
// for the service, with micro's retry policy.
func (cp *ControlPlane) routeConfig(service string, versions []string) *routev3.RouteConfiguration {
	var routes []*routev3.Route
	if h := cp.opts.versionHeader; h != "" {
		for _, v := range versions {
			routes = append(routes, &routev3.Route{
				Name: "version-" + v,
				Match: &routev3.RouteMatch{
					PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: ""},
					Headers: []*routev3.HeaderMatcher{{
						Name: h,
						HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{
							MatchPattern: &matcherv3.StringMatcher_Exact{Exact: v},
						}},
					}},
				},
				Action: &routev3.Route_Route{Route: &routev3.RouteAction{
					ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: VersionCluster(service, v)},
				}},
			})
		}
	}
	def := &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: service}}
	if w := cp.opts.weights[service]; w != nil {
		var split []*routev3.WeightedCluster_ClusterWeight
		for _, v := range versions {
			if w[v] > 0 {
				split = append(split, &routev3.WeightedCluster_ClusterWeight{Name: VersionCluster(service, v), Weight: wrapperspb.UInt32(w[v])})
			}
		}
		if len(split) > 0 {
			def.ClusterSpecifier = &routev3.RouteAction_WeightedClusters{WeightedClusters: &routev3.WeightedCluster{Clusters: split}}
		}
	}
	routes = append(routes, &routev3.Route{
		Name:   "default",
		Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: ""}},
		Action: &routev3.Route_Route{Route: def},
	})
	return &routev3.RouteConfiguration{
		Name: service,
		VirtualHosts: []*routev3.VirtualHost{{
			Name:    service,
			Domains: []string{service},
			Routes:  routes,
			// micro's own retry policy (balancer/randomhash): UNAVAILABLE
			// is retried, three attempts in all, with the same backoff.
			RetryPolicy: &routev3.RetryPolicy{
				RetryOn:    "unavailable",
				NumRetries: wrapperspb.UInt32(randomhash.DefaultMaxAttempts - 1),
				RetryBackOff: &routev3.RetryPolicy_RetryBackOff{
					BaseInterval: durationpb.New(randomhash.DefaultInitialBackoff),
					MaxInterval:  durationpb.New(randomhash.DefaultMaxBackoff),
				},
			},
		}},
	}
}

// edsCluster is a cluster whose endpoints come from the assignment of
// the same name, balanced round robin.
func edsCluster(name string) *clusterv3.Cluster {
	return &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig:     &clusterv3.Cluster_EdsClusterConfig{EdsConfig: adsSource(), ServiceName: name},
		LbPolicy:             clusterv3.Cluster_ROUND_ROBIN,
	}
}

// assignment has one endpoint per node, in one locality per zone.
func (cp *ControlPlane) assignment(name string, nodes []resolver.Node, unhealthy nodeHealth) *endpointv3.ClusterLoadAssignment {
	byZone := map[string]*endpointv3.LocalityLbEndpoints{}
	for _, n := range nodes {
		host, portStr, err := net.SplitHostPort(n.Address)
		port, perr := strconv.ParseUint(portStr, 10, 16)
		if err != nil || perr != nil || host == "" {
			cp.opts.logger.Warn("microgrpc: control plane skips a node with a bad address",
				"cluster", name, "node", n.ID, "address", n.Address)
			continue
		}
		weight := uint32(1)
		if s, ok := n.Metadata[MetadataWeight]; ok {
			if w, err := strconv.ParseUint(s, 10, 32); err == nil && w > 0 {
				weight = uint32(w)
			} else {
				cp.opts.logger.Debug("microgrpc: control plane ignores a bad node weight",
					"cluster", name, "node", n.ID, "weight", s)
			}
		}
		health := corev3.HealthStatus_HEALTHY
		if unhealthy != nil && unhealthy(n.ID) {
			health = corev3.HealthStatus_UNHEALTHY
		}
		zone := n.Metadata[MetadataZone]
		loc := byZone[zone]
		if loc == nil {
			loc = &endpointv3.LocalityLbEndpoints{Locality: &corev3.Locality{Zone: zone}, LoadBalancingWeight: wrapperspb.UInt32(0)}
			byZone[zone] = loc
		}
		loc.LbEndpoints = append(loc.LbEndpoints, &endpointv3.LbEndpoint{
			HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
				Hostname: n.ID,
				Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
					Address:       host,
					PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(port)},
				}}},
			}},
			HealthStatus:        health,
			LoadBalancingWeight: wrapperspb.UInt32(weight),
		})
		// A locality weighs what its nodes weigh: clients drop localities
		// of weight zero, and spread calls between localities by weight.
		loc.LoadBalancingWeight = wrapperspb.UInt32(loc.LoadBalancingWeight.GetValue() + weight)
	}
	cla := &endpointv3.ClusterLoadAssignment{ClusterName: name}
	for _, z := range slices.Sorted(maps.Keys(byZone)) {
		cla.Endpoints = append(cla.Endpoints, byZone[z])
	}
	return cla
}
