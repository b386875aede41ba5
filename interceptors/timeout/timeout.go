// Package timeout gives client calls a default timeout that one call can
// override with WithCallTimeout. An earlier deadline already on the call's
// context always wins, so deadlines propagate: a server that calls another
// service with its incoming context passes its own deadline on (grpc-go
// sends it on the wire as grpc-timeout).
package timeout

import (
	"context"
	"time"

	"google.golang.org/grpc"
)

// CallOption overrides the default timeout for one call.
type CallOption struct {
	grpc.EmptyCallOption
	d time.Duration
}

// WithCallTimeout sets this call's timeout (0: none from this interceptor).
func WithCallTimeout(d time.Duration) CallOption { return CallOption{d: d} }

func timeoutFor(def time.Duration, opts []grpc.CallOption) time.Duration {
	for _, o := range opts {
		if c, ok := o.(CallOption); ok {
			def = c.d
		}
	}
	return def
}

// UnaryClientInterceptor applies the default timeout d.
func UnaryClientInterceptor(d time.Duration) grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		if t := timeoutFor(d, opts); t > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, t)
			defer cancel()
		}
		return invoker(ctx, method, req, reply, cc, opts...)
	}
}

// StreamClientInterceptor applies the default timeout d to a whole stream.
func StreamClientInterceptor(d time.Duration) grpc.StreamClientInterceptor {
	return func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		t := timeoutFor(d, opts)
		if t <= 0 {
			return streamer(ctx, desc, cc, method, opts...)
		}
		ctx, cancel := context.WithTimeout(ctx, t)
		s, err := streamer(ctx, desc, cc, method, opts...)
		if err != nil {
			cancel()
			return nil, err
		}
		// The stream owns the timer now; grpc-go releases the context when
		// the stream ends, and the timer fires at the deadline at worst.
		context.AfterFunc(ctx, cancel)
		return s, nil
	}
}
