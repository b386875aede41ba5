package reqmem_test

import (
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/microgrpc/microgrpc/internal/greetertest"
	"github.com/microgrpc/microgrpc/internal/reqmem"
	pb "github.com/microgrpc/microgrpc/proto/greeter"
)

// Through a real grpc-go server: 64 concurrent requests of 4 MiB (1 MiB
// under the race detector) over 8 connections, to a budget of 8 of them,
// are all served, with never more than the budget reserved (and so
// received) at once.
func TestGateBoundsConcurrentLargeRequests(t *testing.T) {
	const size = largeRequest
	const limit = 8 * size
	// A wait longer than the test: under the race detector on a busy
	// machine a request can take seconds to arrive.
	g := reqmem.New(limit, size, time.Minute)
	var mu sync.Mutex
	held, maxHeld := 0, 0
	srv := grpc.NewServer(grpc.StatsHandler(g), grpc.InTapHandle(g.Tap),
		grpc.InitialWindowSize(64<<10), grpc.InitialConnWindowSize(16<<20), grpc.MaxRecvMsgSize(size))
	pb.RegisterGreeterServer(srv, &greetertest.Server{Hook: func(context.Context, *pb.Request) error {
		mu.Lock()
		held++
		maxHeld = max(maxHeld, held)
		mu.Unlock()
		time.Sleep(50 * time.Millisecond)
		mu.Lock()
		held--
		mu.Unlock()
		return nil
	}})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(lis)
	defer srv.Stop()
	var clients []pb.GreeterClient
	for range 8 {
		cc, err := grpc.NewClient("passthrough:///"+lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer cc.Close()
		clients = append(clients, pb.NewGreeterClient(cc))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()
	req := &pb.Request{Name: strings.Repeat("x", size-64)}
	start := time.Now()
	errs := make(chan error, 64)
	for i := range 64 {
		go func() {
			_, err := clients[i%len(clients)].Hello(ctx, req)
			errs <- err
		}()
	}
	for range 64 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	t.Logf("64 requests of %d MiB in %v: peak reserved %.1f MiB of %d MiB, %d held by handlers at once",
		size>>20, time.Since(start), float64(g.Peak())/(1<<20), limit>>20, maxHeld)
	if g.Peak() > limit {
		t.Errorf("peak reserved %d bytes, over the budget of %d", g.Peak(), limit)
	}
	if maxHeld > limit/size {
		t.Errorf("handlers held %d large requests at once, want at most %d", maxHeld, limit/size)
	}
	// The server ends a call (stats End) just after its reply went out.
	for deadline := time.Now().Add(5 * time.Second); g.Used() != 0 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	if used := g.Used(); used != 0 {
		t.Errorf("%d bytes stay reserved after every call ended", used)
	}
}
