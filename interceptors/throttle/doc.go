// Package throttle is client-side adaptive throttling, as in Google's SRE
// book: a client that sees a service refuse most of its recent calls
// refuses some of its new ones itself, at once, instead of sending them
// to a service that has no room for them.
//
// Over a rolling window (DefaultWindow, in DefaultBuckets buckets) the
// Throttle counts requests, the calls a server answered, and accepts,
// those it answered with anything but a sign of overload. A new call is
// refused locally with probability
//
//	max(0, (requests - K*accepts) / (requests + 1))
//
// (K is DefaultK, 2: the service may refuse half the calls before any is
// refused here). A local refusal is codes.Unavailable with a message that
// begins with RefusedMessage.
//
// Only answers from a server count. A call refused here is neither a
// request nor an accept: counting it as a failed request, as a breaker
// that counts its own rejections does, keeps the probability up after the
// service recovered, so that throttling never ends. A call the caller
// cancelled, or whose caller's deadline passed, says nothing about the
// service either and is not counted. Signs of overload are
// codes.Unavailable, codes.ResourceExhausted and codes.DeadlineExceeded
// (a deadline the server reported, or one set by the server side); every
// other answer, application errors included, is an accept. Since the
// window forgets, throttling ends within a window of the service
// answering again, whatever it refused meanwhile.
//
// The interceptors belong outside retries (grpc-go's own retries run
// below interceptors), so that a call counts once, with its final outcome.
// micro services install one Throttle per Dial, that is per service
// (micro.WithThrottling turns it off).
package throttle
