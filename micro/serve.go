package micro

import (
	"net"

	"google.golang.org/grpc"
)

// Serve runs an existing *grpc.Server on lis as a microgrpc service: its
// services and interceptors stay as they are, and it gains registration
// (endpoints read from its GetServiceInfo), heartbeats, health (unless it
// has its own), reflection, and graceful deregistration on SIGINT/SIGTERM or
// when the WithContext context ends. opts must name the service
// (WithName). It is NewService(WithGRPCServer(s), WithListener(lis),
// opts...).Run(); use that form to reach the Service (for Dial or Health).
//
// Register the server's services before calling Serve.
func Serve(lis net.Listener, s *grpc.Server, opts ...Option) error {
	all := append([]Option{WithGRPCServer(s), WithListener(lis)}, opts...)
	return NewService(all...).Run()
}
