// Package recovery turns a panicking handler into a codes.Internal error,
// logging the panic with its stack, so that the server keeps serving; it
// wraps go-grpc-middleware's recovery interceptors. Subscriber does the
// same for pub/sub handlers.
package recovery

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"

	mwrecovery "github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/microgrpc/microgrpc/interceptors"
)

func handler(l *slog.Logger) mwrecovery.Option {
	return mwrecovery.WithRecoveryHandlerContext(func(ctx context.Context, p any) error {
		l.ErrorContext(ctx, "recovered from a panicking handler", "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
		return status.Error(codes.Internal, "internal error")
	})
}

// UnaryServerInterceptor recovers panics in unary handlers.
func UnaryServerInterceptor(l *slog.Logger) grpc.UnaryServerInterceptor {
	return mwrecovery.UnaryServerInterceptor(handler(l))
}

// StreamServerInterceptor recovers panics in stream handlers.
func StreamServerInterceptor(l *slog.Logger) grpc.StreamServerInterceptor {
	return mwrecovery.StreamServerInterceptor(handler(l))
}

// Subscriber recovers panics in pub/sub handlers; the message is refused.
func Subscriber(l *slog.Logger) interceptors.SubscriberInterceptor {
	return func(next interceptors.SubscriberHandler) interceptors.SubscriberHandler {
		return func(ctx context.Context, topic string, msg any) (err error) {
			defer func() {
				if p := recover(); p != nil {
					l.ErrorContext(ctx, "recovered from a panicking subscriber", "topic", topic, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
					err = fmt.Errorf("recovery: subscriber for %q panicked: %v", topic, p)
				}
			}()
			return next(ctx, topic, msg)
		}
	}
}
