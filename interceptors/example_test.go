package interceptors_test

import (
	"context"
	"fmt"

	"github.com/microgrpc/microgrpc/interceptors"
)

// Subscriber wrappers compose like gRPC interceptors: the first is the
// outermost.
func ExampleChainSubscriber() {
	wrap := func(name string) interceptors.SubscriberInterceptor {
		return func(next interceptors.SubscriberHandler) interceptors.SubscriberHandler {
			return func(ctx context.Context, topic string, msg any) error {
				fmt.Println("enter", name)
				err := next(ctx, topic, msg)
				fmt.Println("leave", name)
				return err
			}
		}
	}
	h := interceptors.ChainSubscriber(wrap("logging"), wrap("auth"))(func(_ context.Context, topic string, msg any) error {
		fmt.Println("handle", topic, msg)
		return nil
	})
	_ = h(context.Background(), "events", "hello")
	// Output:
	// enter logging
	// enter auth
	// handle events hello
	// leave auth
	// leave logging
}
