// Package validate checks messages that have a Validate() error method
// (protoc-gen-validate style; Validate(bool) and ValidateAll() too), through
// go-grpc-middleware's validator interceptors: a request that fails is
// answered InvalidArgument before the handler runs.
package validate

import (
	"context"
	"fmt"

	mwvalidator "github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/validator"
	"google.golang.org/grpc"

	"github.com/microgrpc/microgrpc/interceptors"
)

// UnaryServerInterceptor validates requests.
func UnaryServerInterceptor() grpc.UnaryServerInterceptor {
	return mwvalidator.UnaryServerInterceptor()
}

// StreamServerInterceptor validates every received message.
func StreamServerInterceptor() grpc.StreamServerInterceptor {
	return mwvalidator.StreamServerInterceptor()
}

// UnaryClientInterceptor validates requests before they are sent.
func UnaryClientInterceptor() grpc.UnaryClientInterceptor {
	return mwvalidator.UnaryClientInterceptor()
}

// Subscriber refuses messages that fail validation.
func Subscriber() interceptors.SubscriberInterceptor {
	return func(next interceptors.SubscriberHandler) interceptors.SubscriberHandler {
		return func(ctx context.Context, topic string, msg any) error {
			if v, ok := msg.(interface{ Validate() error }); ok {
				if err := v.Validate(); err != nil {
					return fmt.Errorf("validate: message on %q: %w", topic, err)
				}
			}
			return next(ctx, topic, msg)
		}
	}
}
