// Package ratelimit refuses calls beyond a rate with ResourceExhausted,
// through go-grpc-middleware's ratelimit interceptors and a token bucket
// from golang.org/x/time/rate.
package ratelimit

import (
	"context"
	"errors"
	"fmt"

	mwratelimit "github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/ratelimit"
	"golang.org/x/time/rate"
	"google.golang.org/grpc"

	"github.com/microgrpc/microgrpc/interceptors"
)

// ErrLimited is returned by Subscriber for a message over the rate.
var ErrLimited = errors.New("ratelimit: over the rate")

type limiter struct{ l *rate.Limiter }

func (l limiter) Limit(context.Context) error {
	if !l.l.Allow() {
		return fmt.Errorf("%w: %v per second, burst %d", ErrLimited, l.l.Limit(), l.l.Burst())
	}
	return nil
}

// UnaryServerInterceptor allows perSecond calls a second, with bursts of
// burst.
func UnaryServerInterceptor(perSecond float64, burst int) grpc.UnaryServerInterceptor {
	return mwratelimit.UnaryServerInterceptor(limiter{rate.NewLimiter(rate.Limit(perSecond), burst)})
}

// StreamServerInterceptor limits new streams the same way.
func StreamServerInterceptor(perSecond float64, burst int) grpc.StreamServerInterceptor {
	return mwratelimit.StreamServerInterceptor(limiter{rate.NewLimiter(rate.Limit(perSecond), burst)})
}

// UnaryClientInterceptor limits the calls a client makes.
func UnaryClientInterceptor(perSecond float64, burst int) grpc.UnaryClientInterceptor {
	return mwratelimit.UnaryClientInterceptor(limiter{rate.NewLimiter(rate.Limit(perSecond), burst)})
}

// Subscriber refuses messages over the rate (the broker reports it to the
// publisher or tries another queue member).
func Subscriber(perSecond float64, burst int) interceptors.SubscriberInterceptor {
	l := limiter{rate.NewLimiter(rate.Limit(perSecond), burst)}
	return func(next interceptors.SubscriberHandler) interceptors.SubscriberHandler {
		return func(ctx context.Context, topic string, msg any) error {
			if err := l.Limit(ctx); err != nil {
				return err
			}
			return next(ctx, topic, msg)
		}
	}
}
