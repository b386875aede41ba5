package micro_test

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/microgrpc/microgrpc/interceptors/throttle"
	"github.com/microgrpc/microgrpc/micro"
	pb "github.com/microgrpc/microgrpc/proto/greeter"
	"github.com/microgrpc/microgrpc/resolver/memory"
)

// Dial throttles by default: against a service that answers every call
// with UNAVAILABLE, most calls are soon refused by the client itself; with
// WithThrottling(false) every call reaches the service.
func TestThrottlingDefault(t *testing.T) {
	for _, on := range []bool{true, false} {
		reg := memory.NewRegistry()
		startServiceHook(t, reg, "greeter", func(context.Context, *pb.Request) error {
			return status.Error(codes.Unavailable, "test: overloaded")
		})
		opts := []micro.Option{micro.WithRetries(0)}
		if !on {
			opts = append(opts, micro.WithThrottling(false))
		}
		client := pb.NewGreeterClient(newClient(t, reg, opts...).Dial("greeter"))
		ctx := testCtx(t)
		local := 0
		for range 300 {
			_, err := client.Hello(ctx, &pb.Request{})
			if strings.HasPrefix(status.Convert(err).Message(), throttle.RefusedMessage) {
				local++
			}
		}
		switch {
		case on && local < 150:
			t.Fatalf("throttling on: %d of 300 calls refused locally, want most", local)
		case !on && local != 0:
			t.Fatalf("throttling off: %d calls refused locally", local)
		}
	}
}

func TestThrottlingSetting(t *testing.T) {
	if _, err := initService(t, nil, map[string]string{"MICRO_CLIENT_THROTTLING": "maybe"}); err == nil {
		t.Fatal("MICRO_CLIENT_THROTTLING=maybe: no error")
	}
	if _, err := initService(t, nil, nil, "-client_throttling=false"); err != nil {
		t.Fatalf("-client_throttling=false: %v", err)
	}
}
