// Command greeter is the one-command demo of microgrpc: it starts the
// greeter service and a client in one program, which find each other
// through the default registry, mDNS, and prints the greeting:
//
//	go run ./examples/greeter
//	Hello John
//
// It first moves itself into a private network namespace (only loopback,
// multicast on), so its mDNS traffic never leaves the machine. The same
// service and client as separate programs are in server/ and client/.
package main

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"os"
	"time"

	"google.golang.org/grpc"

	"github.com/microgrpc/microgrpc/examples/greeter/handler"
	"github.com/microgrpc/microgrpc/internal/netns"
	"github.com/microgrpc/microgrpc/micro"
	pb "github.com/microgrpc/microgrpc/proto/greeter"
)

func main() {
	if err := netns.Enter(); err != nil {
		log.Fatalf("greeter demo: %v", err)
	}
	quiet := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))

	// The service.
	ctx, stop := context.WithCancel(context.Background())
	started := make(chan struct{})
	service := micro.NewService(micro.WithName("greeter"), micro.WithContext(ctx), micro.WithLogger(quiet),
		micro.WithAfterStart(func(context.Context) error { close(started); return nil }))
	pb.RegisterGreeterServer(service.Server(), &handler.Greeter{})
	done := make(chan error, 1)
	go func() { done <- service.Run() }()
	select {
	case <-started:
	case err := <-done:
		log.Fatalf("greeter demo: service: %v", err)
	}

	// The client: nothing but the service's name.
	client := micro.NewService(micro.WithName("greeter.client"), micro.WithLogger(quiet))
	greeter := pb.NewGreeterClient(client.Dial("greeter"))
	callCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	rsp, err := greeter.Hello(callCtx, &pb.Request{Name: "John"}, grpc.WaitForReady(true))
	cancel()
	client.Close()
	stop()
	if rerr := <-done; rerr != nil {
		log.Printf("greeter demo: service: %v", rerr)
	}
	if err != nil {
		log.Fatalf("greeter demo: call: %v", err)
	}
	fmt.Println(rsp.GetMsg())
}
