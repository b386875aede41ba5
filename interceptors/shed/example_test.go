package shed_test

import (
	"fmt"

	"google.golang.org/grpc"

	"github.com/microgrpc/microgrpc/interceptors/shed"
)

// A program with its own *grpc.Server passes the limiter's options first,
// so that it runs before its other interceptors.
func Example() {
	limiter := shed.New(shed.WithMinLimit(10), shed.WithMaxLimit(500))
	srv := grpc.NewServer(
		grpc.ChainUnaryInterceptor(limiter.UnaryServerInterceptor()),
		grpc.ChainStreamInterceptor(limiter.StreamServerInterceptor()),
	)
	defer srv.Stop()
	// Register services on srv, then srv.Serve(lis). Or, without a
	// Limiter to read: grpc.NewServer(shed.ServerOptions()...).
	fmt.Println("limit", limiter.Limit(), "in flight", limiter.InFlight())
	// Output: limit 100 in flight 0
}
