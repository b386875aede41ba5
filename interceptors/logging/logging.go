// Package logging logs every call with log/slog: service, method, code,
// duration and peer, through go-grpc-middleware's logging interceptors.
// Health checks are not logged unless WithHealthChecks is given.
// Subscriber returns the same for pub/sub handlers.
package logging

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	mwlogging "github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/selector"
	"google.golang.org/grpc"

	mwinterceptors "github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors"

	"github.com/microgrpc/microgrpc/interceptors"
)

type options struct {
	health bool
}

// Option configures the interceptors.
type Option func(*options)

// WithHealthChecks logs calls to grpc.health.v1.Health too.
func WithHealthChecks() Option { return func(o *options) { o.health = true } }

func adapter(l *slog.Logger) mwlogging.Logger {
	return mwlogging.LoggerFunc(func(ctx context.Context, lvl mwlogging.Level, msg string, fields ...any) {
		l.Log(ctx, slog.Level(lvl), msg, fields...)
	})
}

// mwOpts logs the end of each call only (with code, duration, peer).
var mwOpts = []mwlogging.Option{mwlogging.WithLogOnEvents(mwlogging.FinishCall)}

func notHealth(_ context.Context, c mwinterceptors.CallMeta) bool {
	return !strings.HasPrefix(c.FullMethod(), "/grpc.health.v1.Health/")
}

func eval(opts []Option) options {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

// UnaryServerInterceptor logs unary calls a server handles.
func UnaryServerInterceptor(l *slog.Logger, opts ...Option) grpc.UnaryServerInterceptor {
	i := mwlogging.UnaryServerInterceptor(adapter(l), mwOpts...)
	if eval(opts).health {
		return i
	}
	return selector.UnaryServerInterceptor(i, selector.MatchFunc(notHealth))
}

// StreamServerInterceptor logs streams a server handles.
func StreamServerInterceptor(l *slog.Logger, opts ...Option) grpc.StreamServerInterceptor {
	i := mwlogging.StreamServerInterceptor(adapter(l), mwOpts...)
	if eval(opts).health {
		return i
	}
	return selector.StreamServerInterceptor(i, selector.MatchFunc(notHealth))
}

// UnaryClientInterceptor logs unary calls a client makes.
func UnaryClientInterceptor(l *slog.Logger, opts ...Option) grpc.UnaryClientInterceptor {
	return mwlogging.UnaryClientInterceptor(adapter(l), mwOpts...)
}

// StreamClientInterceptor logs streams a client opens.
func StreamClientInterceptor(l *slog.Logger, opts ...Option) grpc.StreamClientInterceptor {
	return mwlogging.StreamClientInterceptor(adapter(l), mwOpts...)
}

// Subscriber logs every message a subscriber handles: topic, message type,
// duration and error.
func Subscriber(l *slog.Logger) interceptors.SubscriberInterceptor {
	return func(next interceptors.SubscriberHandler) interceptors.SubscriberHandler {
		return func(ctx context.Context, topic string, msg any) error {
			start := time.Now()
			err := next(ctx, topic, msg)
			level := slog.LevelInfo
			if err != nil {
				level = slog.LevelWarn
			}
			l.Log(ctx, level, "finished handling message", "topic", topic, "type", fmt.Sprintf("%T", msg), "duration", time.Since(start), "error", err)
			return err
		}
	}
}
