package micro_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/microgrpc/microgrpc/micro"
	pb "github.com/microgrpc/microgrpc/proto/greeter"
	"github.com/microgrpc/microgrpc/resolver/memory"
)

// With the default limits, a 5 MiB request gets ResourceExhausted and the
// next normal call on the same connection succeeds.
func TestDefaultMaxRequestSize(t *testing.T) {
	srv := startService(t, memory.NewRegistry(), "greeter")
	client := pb.NewGreeterClient(plainConn(t, srv.svc.Address()))
	_, err := client.Hello(testCtx(t), &pb.Request{Name: strings.Repeat("x", 5<<20)})
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("5 MiB request = %v, want ResourceExhausted", err)
	}
	if _, err := client.Hello(testCtx(t), &pb.Request{Name: "small"}); err != nil {
		t.Fatalf("the next call: %v", err)
	}
}

// A client that opens more streams than a connection may hold waits on
// its own connection; another client's calls go through at once.
func TestStreamFloodDoesNotStopOthers(t *testing.T) {
	srv := startService(t, memory.NewRegistry(), "greeter")
	flood := pb.NewGreeterClient(plainConn(t, srv.svc.Address()))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	opened := make(chan error, micro.DefaultMaxConcurrentStreams+100)
	for range micro.DefaultMaxConcurrentStreams + 100 {
		go func() {
			s, err := flood.Chat(ctx)
			if err == nil {
				err = s.Send(&pb.Request{Name: "hold"})
			}
			opened <- err
		}()
	}
	// Wait until the connection is full.
	for range micro.DefaultMaxConcurrentStreams {
		if err := <-opened; err != nil {
			t.Fatal(err)
		}
	}
	other := pb.NewGreeterClient(plainConn(t, srv.svc.Address()))
	start := time.Now()
	cctx, ccancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer ccancel()
	if _, err := other.Hello(cctx, &pb.Request{Name: "me"}, grpc.WaitForReady(true)); err != nil {
		t.Fatalf("another client's call during the flood: %v", err)
	}
	t.Logf("a call from another connection took %v with %d streams held", time.Since(start), micro.DefaultMaxConcurrentStreams)
	cancel() // the flood ends
}
