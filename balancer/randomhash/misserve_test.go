package randomhash

import (
	"errors"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestUnknownService(t *testing.T) {
	const method = "/greeter.Greeter/Hello"
	for _, c := range []struct {
		name   string
		err    error
		method string
		want   bool
	}{
		{"grpc-go's answer", status.Error(codes.Unimplemented, "unknown service greeter.Greeter"), method, true},
		{"another service", status.Error(codes.Unimplemented, "unknown service other.Other"), method, false},
		{"unknown method", status.Error(codes.Unimplemented, "unknown method Hello for service greeter.Greeter"), method, false},
		{"a handler's Unimplemented", status.Error(codes.Unimplemented, "method Hello not implemented"), method, false},
		{"another code", status.Error(codes.NotFound, "unknown service greeter.Greeter"), method, false},
		{"not a status", errors.New("unknown service greeter.Greeter"), method, false},
		{"method without service", status.Error(codes.Unimplemented, "unknown service "), "/Hello", false},
		{"method without slash", status.Error(codes.Unimplemented, "unknown service greeter.Greeter"), "greeter.Greeter/Hello", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := unknownService(c.err, c.method); got != c.want {
				t.Fatalf("unknownService(%v, %q) = %v, want %v", c.err, c.method, got, c.want)
			}
		})
	}
}
