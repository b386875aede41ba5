// Package auth checks a bearer token on every call (and pub/sub message)
// with a function the user supplies, through go-grpc-middleware's auth
// interceptors. The health and reflection services are exempt unless
// WithoutExemptions is given, so probes and grpcurl keep working.
//
// A missing or malformed "authorization: Bearer <token>" is
// Unauthenticated. The check function decides the rest: an error wrapping
// ErrUnauthenticated (unknown or expired token) is Unauthenticated, a gRPC
// status error is passed through, and any other error is
// PermissionDenied (the token is good but may not do this).
package auth

import (
	"context"
	"errors"
	"strings"

	mwinterceptors "github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors"
	mwauth "github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/auth"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/selector"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/microgrpc/microgrpc/interceptors"
)

// ErrUnauthenticated marks a token the check function does not accept.
var ErrUnauthenticated = errors.New("auth: invalid token")

// CheckFunc validates token for the call whose context is ctx and returns
// the context the handler gets (e.g. with the user in it).
type CheckFunc func(ctx context.Context, token string) (context.Context, error)

type options struct{ exempt bool }

// Option configures the interceptors.
type Option func(*options)

// WithoutExemptions requires the token for health and reflection too.
func WithoutExemptions() Option { return func(o *options) { o.exempt = false } }

func eval(opts []Option) options {
	o := options{exempt: true}
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

func authFunc(check CheckFunc) mwauth.AuthFunc {
	return func(ctx context.Context) (context.Context, error) {
		token, err := mwauth.AuthFromMD(ctx, "bearer")
		if err != nil {
			return nil, err // Unauthenticated, from go-grpc-middleware
		}
		return verdict(check(ctx, token))
	}
}

func verdict(ctx context.Context, err error) (context.Context, error) {
	switch {
	case err == nil:
		return ctx, nil
	case errors.Is(err, ErrUnauthenticated):
		return nil, status.Error(codes.Unauthenticated, err.Error())
	}
	if _, ok := status.FromError(err); ok {
		return nil, err
	}
	return nil, status.Error(codes.PermissionDenied, err.Error())
}

func exempt(_ context.Context, c mwinterceptors.CallMeta) bool {
	m := c.FullMethod()
	return !strings.HasPrefix(m, "/grpc.health.v1.Health/") && !strings.HasPrefix(m, "/grpc.reflection.")
}

// UnaryServerInterceptor checks unary calls.
func UnaryServerInterceptor(check CheckFunc, opts ...Option) grpc.UnaryServerInterceptor {
	i := mwauth.UnaryServerInterceptor(authFunc(check))
	if eval(opts).exempt {
		return selector.UnaryServerInterceptor(i, selector.MatchFunc(exempt))
	}
	return i
}

// StreamServerInterceptor checks streams.
func StreamServerInterceptor(check CheckFunc, opts ...Option) grpc.StreamServerInterceptor {
	i := mwauth.StreamServerInterceptor(authFunc(check))
	if eval(opts).exempt {
		return selector.StreamServerInterceptor(i, selector.MatchFunc(exempt))
	}
	return i
}

// Subscriber checks the "authorization" header of pub/sub messages.
func Subscriber(check CheckFunc) interceptors.SubscriberInterceptor {
	return func(next interceptors.SubscriberHandler) interceptors.SubscriberHandler {
		return func(ctx context.Context, topic string, msg any) error {
			nctx, err := authFunc(check)(ctx)
			if err != nil {
				return err
			}
			return next(nctx, topic, msg)
		}
	}
}

// Bearer returns per-call credentials sending token, for a client:
// grpc.WithPerRPCCredentials(auth.Bearer(t)) or grpc.PerRPCCredentials(...).
// It does not require TLS, so that it works on loopback and in tests; use
// TLS for anything else.
func Bearer(token string) credentials.PerRPCCredentials { return bearer(token) }

type bearer string

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}
func (b bearer) RequireTransportSecurity() bool { return false }

// WithToken returns ctx carrying the bearer token in its outgoing metadata
// (for Publish, or a single call).
func WithToken(ctx context.Context, token string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
}
