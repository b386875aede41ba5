package auth

import (
	"context"
	"crypto/x509"
	"fmt"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// PeerIdentity returns the identity of the caller of a call over mutual
// TLS: the first URI SAN of its verified certificate (a SPIFFE ID such as
// spiffe://example.org/billing), else its first DNS SAN, else its common
// name. ok is false when the call did not come over TLS with a verified
// client certificate. Handlers and interceptors use it on the ctx they get.
func PeerIdentity(ctx context.Context) (id string, ok bool) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return "", false
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.VerifiedChains) == 0 || len(info.State.VerifiedChains[0]) == 0 {
		return "", false
	}
	return CertIdentity(info.State.VerifiedChains[0][0]), true
}

// CertIdentity is the identity PeerIdentity reads from a certificate.
func CertIdentity(c *x509.Certificate) string {
	switch {
	case len(c.URIs) > 0:
		return c.URIs[0].String()
	case len(c.DNSNames) > 0:
		return c.DNSNames[0]
	}
	return c.Subject.CommonName
}

// Allow maps methods to the peer identities (see PeerIdentity) that may
// call them. A key is a full method ("/greeter.Greeter/Hello"), a service
// ("/greeter.Greeter/*"), or "*" for every method; the most specific key
// that matches a call decides. An identity "*" allows any verified peer.
// Methods no key matches are refused.
type Allow map[string][]string

// allowed reports whether id may call method.
func (a Allow) allowed(method, id string) (bool, bool) {
	rule, ok := a[method]
	if !ok {
		if i := strings.LastIndexByte(method, '/'); i > 0 {
			rule, ok = a[method[:i]+"/*"]
		}
	}
	if !ok {
		rule, ok = a["*"]
	}
	if !ok {
		return false, false
	}
	for _, r := range rule {
		if r == id || r == "*" {
			return true, true
		}
	}
	return false, true
}

// check authorizes one call: Unauthenticated without a verified client
// certificate, PermissionDenied when its identity is not allowed.
func (a Allow) check(ctx context.Context, method string) error {
	if exemptMethod(method) && a.exempt() {
		return nil
	}
	id, ok := PeerIdentity(ctx)
	if !ok {
		return status.Error(codes.Unauthenticated, "auth: the call has no verified client certificate (mutual TLS)")
	}
	ok, matched := a.allowed(method, id)
	switch {
	case ok:
		return nil
	case !matched:
		return status.Errorf(codes.PermissionDenied, "auth: no rule allows %s to anyone", method)
	}
	return status.Errorf(codes.PermissionDenied, "auth: %s may not call %s", id, method)
}

// exempt reports whether health and reflection stay open: unless the
// rules name them, as probes and grpcurl must keep working.
func (a Allow) exempt() bool {
	for k := range a {
		if exemptMethod(k) {
			return false
		}
	}
	return true
}

func exemptMethod(m string) bool {
	return strings.HasPrefix(m, "/grpc.health.v1.Health/") || strings.HasPrefix(m, "/grpc.reflection.")
}

// UnaryIdentityInterceptor authorizes unary calls by the caller's
// certificate identity against rules. Health and reflection are open
// unless rules name them.
func UnaryIdentityInterceptor(rules Allow) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		if err := rules.check(ctx, info.FullMethod); err != nil {
			return nil, err
		}
		return h(ctx, req)
	}
}

// StreamIdentityInterceptor is UnaryIdentityInterceptor for streams.
func StreamIdentityInterceptor(rules Allow) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		if err := rules.check(ss.Context(), info.FullMethod); err != nil {
			return err
		}
		return h(srv, ss)
	}
}

// String lists the rules, for logs.
func (a Allow) String() string {
	var b strings.Builder
	for k, v := range a {
		fmt.Fprintf(&b, "%s: %s; ", k, strings.Join(v, ","))
	}
	return strings.TrimSuffix(b.String(), "; ")
}
