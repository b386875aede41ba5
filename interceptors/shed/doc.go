// Package shed is server-side adaptive load shedding: an adaptive limit on
// the unary calls a server runs at once. When the calls in flight reach
// the limit, a new call is refused at once, before its handler runs, with
// codes.Unavailable, a message beginning with RefusedMessage and the
// trailer grpc-retry-pushback-ms: 0, so that a grpc-go client whose retry
// policy retries UNAVAILABLE (micro's and balancer/randomhash's do) retries
// at once, and randomhash's interceptor sends the retry to a node it has not
// tried. UNAVAILABLE and not RESOURCE_EXHAUSTED: the call never started, so
// it is safe to retry anywhere, and every gRPC client's retry policy treats
// UNAVAILABLE so.
//
// # The limit
//
// The limiter is a gradient limiter (in the style of Netflix's
// concurrency-limits "gradient2"), chosen over a CoDel-style queue-delay
// rule because a gRPC server has no queue of its own to measure: grpc-go
// starts every call's handler at once, so overload shows as latency, not as
// time spent waiting in a queue. Each unary call's latency is measured; per
// window (Window, and at least MinSamples calls) the mean is the short-term
// RTT. The long-term RTT follows the best short-term RTT seen: it drops to
// a lower short-term RTT at once and rises towards a higher one slowly
// (LongWindow windows), and only in windows in which the calls did not
// reach the limit: then a slower handler (a slower database, say) is learnt
// as the new baseline, while the latency of overload, which only shows
// when the calls are at the limit, never is. (Gradient2 lets the baseline
// rise under overload too, so that its limit creeps up as long as the
// overload lasts.) Then
//
//	gradient = clamp(Tolerance * long / short, 0.5, 1)
//	new      = limit * gradient + sqrt(limit)
//	limit    = limit * (1 - Smoothing) + new * Smoothing
//
// bounded by MinLimit and MaxLimit. While latency stays within Tolerance of
// the long-term RTT the limit grows by about sqrt(limit) per window; above
// it, it shrinks towards the concurrency at which latency began to grow. A
// window in which the calls in flight never reached half the limit does
// not grow it (the load, not the server, bounded the calls).
//
// # What is never shed
//
// Health checks (/grpc.health.v1.Health/) and reflection (/grpc.reflection.)
// are never refused and never measured: a loaded node must still answer
// its health checks, or it would be ejected as dead. Streams are not
// counted or measured (a long-lived stream's duration says nothing about
// the server's load); by default new streams are not refused either, since
// long-lived streams (watches, broker deliveries) are few and expensive to
// reopen. ShedStreams(true) refuses a new stream while the unary calls in
// flight are at the limit.
//
// # Cost
//
// An admitted call costs two atomic additions, an atomic load of the limit
// and two time.Now calls; no allocation. Once per window one call updates
// the limit under a lock that no other call waits for.
package shed
