// Package interceptors holds microgrpc's wrappers: go-micro's handler,
// client and subscriber wrappers as gRPC interceptors. gRPC already defines
// the unary and stream interceptor types; this package adds the subscriber
// kind, for pub/sub handlers, so that every concern (logging, recovery,
// metadata, auth, ...) can offer a server, a client and a subscriber side.
// The concerns live in subpackages.
package interceptors

import "context"

// SubscriberHandler handles one decoded pub/sub message: msg is the
// handler's own argument type (e.g. *pb.Event), ctx carries the message's
// metadata as incoming gRPC metadata.
type SubscriberHandler func(ctx context.Context, topic string, msg any) error

// SubscriberInterceptor wraps a SubscriberHandler (go-micro's
// SubscriberWrapper).
type SubscriberInterceptor func(next SubscriberHandler) SubscriberHandler

// ChainSubscriber composes interceptors; the first is the outermost, as
// with grpc.ChainUnaryInterceptor.
func ChainSubscriber(ics ...SubscriberInterceptor) SubscriberInterceptor {
	return func(next SubscriberHandler) SubscriberHandler {
		for i := len(ics) - 1; i >= 0; i-- {
			next = ics[i](next)
		}
		return next
	}
}
