package shed

import (
	"context"
	"testing"

	"google.golang.org/grpc"
)

// BenchmarkUnaryAdmitted is the interceptor's cost on an admitted call
// with a handler that does nothing.
func BenchmarkUnaryAdmitted(b *testing.B) {
	l := New()
	in := l.UnaryServerInterceptor()
	info := &grpc.UnaryServerInfo{FullMethod: "/greeter.Greeter/Hello"}
	h := func(ctx context.Context, req any) (any, error) { return nil, nil }
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := in(ctx, nil, info, h); err != nil {
				b.Fatal(err)
			}
		}
	})
}
