package throttle_test

import (
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/microgrpc/microgrpc/interceptors/throttle"
)

// A plain grpc-go client throttles itself while the service refuses most
// of its calls.
func ExampleDialOptions() {
	cc, err := grpc.NewClient("passthrough:///127.0.0.1:50051", append(throttle.DialOptions(),
		grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer cc.Close()
	fmt.Println("throttled client ready")
	// Output: throttled client ready
}
