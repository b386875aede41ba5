// Package micro is microgrpc's service: a *grpc.Server that registers
// itself in a registry, and clients that find other services through it.
//
//	svc := micro.NewService(micro.WithName("greeter"))
//	pb.RegisterGreeterServer(svc.Server(), &handler{})
//	if err := svc.Run(); err != nil { ... }
//
// and elsewhere
//
//	greeter := pb.NewGreeterClient(client.Dial("greeter"))
//
// A service is a plain gRPC service: any gRPC client can call it at its
// address on the standard method paths, and it serves the standard health
// service (grpc.health.v1) and server reflection, so grpcurl and
// grpc_health_probe work against it.
//
// # Life of a service
//
// [Service.Run] listens, serves, registers the node (with the endpoints
// read from the server's GetServiceInfo), refreshes the registration every
// RegisterInterval, and on SIGINT/SIGTERM or context cancellation sets health
// to NOT_SERVING, deregisters, waits briefly for clients to notice, and stops
// gracefully within the grace period. Calls in flight when shutdown begins
// complete.
//
// # Clients
//
// [Service.Dial] returns a *grpc.ClientConn for "<registry>:///<name>",
// resolved by the service's own registry (no global resolver state), load
// balanced and retried by the default service config. Connections are cached
// per name and closed with the service.
package micro
