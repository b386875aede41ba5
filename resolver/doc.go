// Package resolver is microgrpc's service discovery: the registry model
// (services, nodes, endpoints), the [Registry] and [Watcher] interfaces every
// discovery plugin implements, and one adapter, [NewBuilder], that turns any
// Registry into a grpc-go [google.golang.org/grpc/resolver.Builder].
//
// # How a name becomes addresses
//
// A server registers itself ([Registry.Register]) as a [Service] holding one
// [Node]: its id, the address it is listening on, its version and metadata.
// A client dials "<scheme>:///<service-name>" with the builder returned by
// [NewBuilder] (through [google.golang.org/grpc.WithResolvers], or
// [google.golang.org/grpc/resolver.Register] for a scheme-wide default). The
// builder lists the service once, then follows [Registry.Watch] events; every
// change is coalesced with any that arrive with it into ONE
// [google.golang.org/grpc/resolver.ClientConn.UpdateState] carrying the whole
// node list: one [google.golang.org/grpc/resolver.Endpoint] per node, with the
// node's id, version and metadata attached ([NodeFromEndpoint]), and the
// legacy Addresses field filled too, so balancers built on either
// endpointsharding or balancer/base work.
//
// # When the registry misbehaves
//
// When the registry errors or a service's node list goes empty, the resolver
// keeps serving the last good list for a grace period ([WithGracePeriod]),
// because a registry outage should not take a healthy fleet down with it.
// After that it reports an error naming the service and the registry it looked
// in, and keeps retrying on its own with capped exponential backoff: grpc-go
// does not call ResolveNow again after an error, so waiting for it would stall
// the channel forever.
//
// # Implementations
//
// resolver/memory is an in-process registry with TTL expiry, for tests and
// single-process programs; resolver/mdns (the default for services) and
// resolver/etcd are the network ones.
package resolver
