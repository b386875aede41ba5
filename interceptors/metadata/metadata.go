// Package metadata reads and writes request metadata the same way on the
// client, the server and in subscribers, with case-insensitive keys. It is
// built on google.golang.org/grpc/metadata (gRPC lower-cases keys on the
// wire; go-micro users who set "X-User-Id" and read "X-User-Id" were bitten
// by that): every key is lower-cased here on the way in and on the way out.
//
// In a subscriber, a message's headers are the incoming metadata of the
// handler's context (pubsub.RegisterSubscriber puts them there).
package metadata

import (
	"context"
	"strings"

	grpcmd "google.golang.org/grpc/metadata"
)

// Get returns the first value of key in the incoming metadata (server,
// subscriber) or, failing that, the outgoing metadata (client), ignoring
// case.
func Get(ctx context.Context, key string) (string, bool) {
	key = strings.ToLower(key)
	if md, ok := grpcmd.FromIncomingContext(ctx); ok {
		if v := md.Get(key); len(v) > 0 {
			return v[0], true
		}
	}
	if md, ok := grpcmd.FromOutgoingContext(ctx); ok {
		if v := md.Get(key); len(v) > 0 {
			return v[0], true
		}
	}
	return "", false
}

// Set returns a context whose outgoing metadata (for calls and publishes
// made with it) has key=value, replacing earlier values of key.
func Set(ctx context.Context, key, value string) context.Context {
	md, _ := grpcmd.FromOutgoingContext(ctx)
	md = md.Copy()
	md.Set(strings.ToLower(key), value)
	return grpcmd.NewOutgoingContext(ctx, md)
}

// Forward returns ctx with the incoming metadata copied to the outgoing
// side, for a server or subscriber that calls on with the caller's
// metadata (keys already lower case). Pseudo-headers and transport headers
// are left out.
func Forward(ctx context.Context) context.Context {
	in, ok := grpcmd.FromIncomingContext(ctx)
	if !ok {
		return ctx
	}
	out, _ := grpcmd.FromOutgoingContext(ctx)
	out = out.Copy()
	for k, v := range in {
		switch {
		case strings.HasPrefix(k, ":"), k == "content-type", k == "user-agent", k == "te", strings.HasPrefix(k, "grpc-"):
			continue
		}
		out[k] = append([]string(nil), v...)
	}
	return grpcmd.NewOutgoingContext(ctx, out)
}
