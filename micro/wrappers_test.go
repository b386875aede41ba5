package micro_test

import (
	"context"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc"

	"github.com/microgrpc/microgrpc/micro"
	pb "github.com/microgrpc/microgrpc/proto/greeter"
	"github.com/microgrpc/microgrpc/resolver/memory"
)

// Wrappers run in go-micro's order: the first given is the outermost, on
// the server and on the client.
func TestWrapperOrder(t *testing.T) {
	var mu sync.Mutex
	var trace []string
	note := func(s string) {
		mu.Lock()
		trace = append(trace, s)
		mu.Unlock()
	}
	server := func(s string) grpc.UnaryServerInterceptor {
		return func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			note("server-" + s)
			return h(ctx, req)
		}
	}
	client := func(s string) grpc.UnaryClientInterceptor {
		return func(ctx context.Context, m string, req, rsp any, cc *grpc.ClientConn, inv grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			note("client-" + s)
			return inv(ctx, m, req, rsp, cc, opts...)
		}
	}
	reg := memory.NewRegistry()
	startService(t, reg, "greeter", micro.WithUnaryServerInterceptors(server("1"), server("2")), micro.WithUnaryServerInterceptors(server("3")))
	c := newClient(t, reg, micro.WithUnaryClientInterceptors(client("1"), client("2")))
	if _, err := pb.NewGreeterClient(c.Dial("greeter")).Hello(testCtx(t), &pb.Request{}); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(trace, " "); got != "client-1 client-2 server-1 server-2 server-3" {
		t.Fatalf("order %s", got)
	}
}
