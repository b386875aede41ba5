package randomhash

import (
	"context"
	"io"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// A node that is not what its record says. A registry record can point at
// a gRPC server that does not serve the service at all (a record without a
// health service name written for the wrong port, say etcd's own): its
// standard health check passes, and every call it gets fails with
// grpc-go's "unknown service greeter.Greeter". Unimplemented in general is
// the caller's error (a method that no node has) and is neither retried
// nor held against a node; but that one answer, for the service the call
// was made to, comes from the server's handler lookup, before any handler
// ran. So the interceptors treat it as the node's fault: the node is
// ejected (for the longest cool-down, as the server said plainly that it
// lacks the service), and a unary call is sent again to a node it has not
// tried, a few times at most. A stream is not sent again (its messages
// are not kept), but its node is ejected all the same.
//
// A node that serves the channel's other services but lacks this one (a
// service added during a rolling deploy) is ejected too: the call's answer
// cannot tell it from a stranger (grpc-go reports some attempts to the
// balancer without their error, so "it answered other calls" is no sure
// sign). Its cool-down ends, and while every node is ejected picks use
// ejected nodes, so the cost is load moved to the nodes that have the
// service, not calls lost.

// misservedRetries bounds the attempts a unary call makes after nodes that
// lack its service.
const misservedRetries = 3

// unknownServicePrefix starts grpc-go's answer for a service the server
// does not have ("unknown service %v", server.go).
const unknownServicePrefix = "unknown service "

// unknownService reports whether err is a server's answer that it lacks
// the service of method ("/pkg.Service/Method").
func unknownService(err error, method string) bool {
	if status.Code(err) != codes.Unimplemented {
		return false
	}
	svc, ok := strings.CutPrefix(method, "/")
	if i := strings.LastIndexByte(svc, '/'); ok && i > 0 {
		svc = svc[:i]
	} else {
		return false
	}
	rest, ok := strings.CutPrefix(status.Convert(err).Message(), unknownServicePrefix)
	return ok && rest == svc
}

// misserved looks at a call's error: when the node last picked answered
// that it lacks the call's service, it ejects the node and reports whether
// the call may go to another one (the node was new to the call; a node
// picked twice means none is left to try).
func (cs *callState) misserved(err error, method string) bool {
	if !unknownService(err, method) {
		return false
	}
	cs.mu.Lock()
	o := cs.last
	again := 0
	if n := len(cs.tried); n > 0 {
		for _, id := range cs.tried[:n-1] {
			if id == cs.tried[n-1] {
				again++
			}
		}
	}
	cs.mu.Unlock()
	if o == nil {
		return false
	}
	o.misserves()
	return again == 0
}

// misserves ejects the node for the longest cool-down.
func (o *outlier) misserves() {
	o.eject(roundUntil(timeNow().Add(o.b.cfg.Load().max).UnixNano()))
}

// invokeAvoidingMisserved is the unary interceptor's call: it sends the
// call again, a few times at most, while the nodes it reached lack its
// service.
func invokeAvoidingMisserved(ctx context.Context, cs *callState, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts []grpc.CallOption) error {
	err := invoker(ctx, method, req, reply, cc, opts...)
	for i := 0; err != nil && i < misservedRetries && cs.misserved(err, method); i++ {
		err = invoker(ctx, method, req, reply, cc, opts...)
	}
	return err
}

// misserveStream ejects the node of a stream that ends with the answer
// that it lacks the service.
type misserveStream struct {
	grpc.ClientStream
	cs     *callState
	method string
}

func (s *misserveStream) RecvMsg(m any) error {
	err := s.ClientStream.RecvMsg(m)
	if err != nil && err != io.EOF {
		s.cs.misserved(err, s.method)
	}
	return err
}
