package micro_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/microgrpc/microgrpc/micro"
	pb "github.com/microgrpc/microgrpc/proto/greeter"
	"github.com/microgrpc/microgrpc/resolver/memory"
)

func TestRequestTimeoutBoundsCalls(t *testing.T) {
	reg := memory.NewRegistry()
	startServiceHook(t, reg, "blocking", func(ctx context.Context, _ *pb.Request) error {
		<-ctx.Done() // answers only when the caller gives up
		return ctx.Err()
	})
	client := newClient(t, reg, micro.WithRequestTimeout(100*time.Millisecond))
	start := time.Now()
	_, err := pb.NewGreeterClient(client.Dial("blocking")).Hello(testCtx(t), &pb.Request{}, grpc.WaitForReady(true))
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("call = %v, want DeadlineExceeded from the default request timeout", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("call took %v, want about 100ms", d)
	}
}
