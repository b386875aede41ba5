// Package pubsub is go-micro's publish and subscribe for a micro service:
// typed handlers, messages encoded by content-type, metadata carried as
// message headers, and the service's subscriber interceptors, over the
// service's broker (micro.Service.Broker: http by default, nats,
// jetstream or memory by --broker).
//
//	pubsub.RegisterSubscriber("events", svc, func(ctx context.Context, ev *pb.Event) error { ... },
//		pubsub.WithQueue("workers")) // optional queue group
//	err := pubsub.NewPublisher("events", client).Publish(ctx, &pb.Event{Id: "1"})
//
// It is a package of its own so that only services that use pub/sub link
// a broker: importing it brings the default http broker (broker/direct),
// whose deliveries ride on the subscriber node's own gRPC server.
//
// # Life of a subscription
//
// RegisterSubscriber attaches the service's pub/sub part (micro.Part) and
// makes the broker at once, so that the http broker can register its
// delivery service on the server before the service serves; call it after
// Init and before Run. Subscriptions start when the node is registered (at
// once when the service runs already) and drain during the graceful stop,
// while the server finishes its calls.
//
// # What a nil error means
//
// See package broker: with http every subscriber's handler (one member per
// queue group) returned nil; with nats the NATS server has the message;
// with jetstream the stream stored it.
package pubsub
