// Package registrytest is a conformance kit for [resolver.Registry]
// implementations, in the manner of testing/fstest: a registry plugin's
// tests call [Run] with a function that makes a registry, and Run checks,
// in subtests, that it keeps the contract documented in package resolver.
//
// # Using it
//
// In the plugin's package, with the backend its other tests already use:
//
//	func TestConformance(t *testing.T) {
//		registrytest.Run(t, func(t *testing.T) resolver.Registry {
//			r, err := myregistry.New(myregistry.WithAddress(testServer))
//			if err != nil {
//				t.Fatal(err)
//			}
//			t.Cleanup(func() { r.Close() })
//			return r
//		}, registrytest.WithTTL(time.Second))
//	}
//
// The function is called once for each subtest, with that subtest's t; it
// owns what it makes and should close it in t.Cleanup. Registries made for
// different subtests may share one backend (one etcd server, one network):
// every subtest uses service names of its own, unique in the process, and
// deregisters what it registered when it ends, also when it fails. A
// registry with a key prefix may give each t a prefix of its own, but when
// the function is called twice with the same t (only under
// [WithKeepAlive]) both registries must see the same data.
//
// Run it under the race detector (go test -race): one subtest registers
// and deregisters from several goroutines at once. A TestMain with
// go.uber.org/goleak then also shows watchers and goroutines that a
// registry leaks when the kit stops or cancels them.
//
// # What it checks
//
//   - Every field of a Service round-trips through Register and GetService:
//     name, version, service metadata, endpoints (names, streaming flags,
//     metadata), node id, address, metadata and HealthService; the registry
//     keeps no reference to what it was given or returned.
//   - Several nodes and versions: GetService returns one Service per
//     version, each with all its nodes; nodes registered or deregistered in
//     one call come and go together; a service whose name extends another's
//     does not leak into it.
//   - GetService of an unknown service fails with an error wrapping
//     [resolver.ErrNotFound]; so does a service whose nodes all left.
//   - Register refuses invalid services (nil, empty name, '/' in the name
//     or a node id, no nodes, empty node id or address) with an error
//     wrapping [resolver.ErrInvalidService], registering none of their
//     nodes; Deregister refuses an invalid name likewise; deregistering an
//     unknown node is not an error.
//   - Registering a node again refreshes it: changed data (metadata,
//     address, endpoints, version) replaces the old, and no duplicate
//     appears.
//   - With [WithTTL], a registration that is no longer refreshed expires
//     within about its TTL, and watchers see it go; one that is refreshed
//     outlives its TTL.
//   - ListServices lists the registered services, and stops listing them
//     once they are gone.
//   - Watch, of one service and of all (WatchService("")), reports Create,
//     Update and Delete in the order the changes were made, and nothing of
//     other services when it watches one; a watcher's event replay ends in
//     the registry's state after concurrent changes.
//   - Next returns [resolver.ErrWatcherStopped] after Stop (also when Stop
//     comes while Next waits, and when it is called twice), and an error
//     once the watch's context ends.
//   - Concurrent Register, Deregister, GetService and ListServices from
//     several goroutines are safe and leave the expected nodes.
//
// Each subtest is bounded by [WithTimeout] (10 s by default) and polls
// where it waits for something, rather than sleeping a fixed time. The
// addresses it registers are on 127.0.0.1 and are never dialled.
//
// # Capabilities
//
// Without options the kit expects the strictest behaviour the contract
// allows. A backend that legitimately cannot provide some of it says so:
// [WithEventualConsistency] for reads that lag writes (mDNS),
// [WithoutEndpointMetadata] for a transport without room for it, [WithTTL]
// to run the expiry checks, and [WithKeepAlive] for a registry that
// refreshes its own registrations (etcd leases). A changed node is always
// expected to reach watchers as one Update, never as a Delete and a Create:
// clients would lose the node meanwhile.
package registrytest
