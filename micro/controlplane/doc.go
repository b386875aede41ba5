// Package controlplane is an xDS control plane fed by a microgrpc
// registry: any gRPC client, in any language, that speaks xDS
// ("proxyless gRPC") discovers and balances between the nodes of a
// microgrpc service by dialling xds:///SERVICE, with no microgrpc code.
//
// It follows every service of a [resolver.Registry] (mDNS, etcd, memory,
// any other) and serves, over the Aggregated Discovery Service (state of
// the world and incremental, by github.com/envoyproxy/go-control-plane),
// for each service:
//
//   - a Listener named after the service: an API listener whose HTTP
//     connection manager takes its routes from the RouteConfiguration of
//     the same name, with the router filter;
//   - that RouteConfiguration: one virtual host for the service's name,
//     a route per version that the version header selects (see
//     [WithVersionHeader]), and a default route to every node, or split
//     between versions by weight ([WithVersionWeights]); micro's retry
//     policy (UNAVAILABLE, three attempts, the same backoff);
//   - a Cluster (EDS) of all the nodes, named after the service, and one
//     per version ([VersionCluster]);
//   - their ClusterLoadAssignments: one endpoint per node, one locality
//     per zone (node metadata [MetadataZone]), the node's weight from
//     [MetadataWeight].
//
// A node is in the assignment while it is registered: it leaves at once
// when it deregisters, and when its registration expires. With
// [WithHealthCheck] the control plane also asks each node for its gRPC
// health and marks failing nodes UNHEALTHY, which clients skip.
//
// # Serving
//
//	cp, err := controlplane.New(reg)
//	if err != nil { ... }
//	defer cp.Close()
//	lis, _ := net.Listen("tcp", "127.0.0.1:18000")
//	go cp.Serve(lis)
//
// and a client, given the file [Bootstrap] writes (or `micro xds
// bootstrap` prints) in GRPC_XDS_BOOTSTRAP:
//
//	import _ "google.golang.org/grpc/xds"
//	conn, err := grpc.NewClient("xds:///greeter", grpc.WithTransportCredentials(insecure.NewCredentials()))
//
// The command `micro xds` serves it with the registry flags and
// environment of services, and TLS (mutual TLS with a CA) by the same
// three settings.
package controlplane
