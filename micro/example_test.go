package micro_test

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/microgrpc/microgrpc/internal/greetertest"
	"github.com/microgrpc/microgrpc/micro"
	pb "github.com/microgrpc/microgrpc/proto/greeter"
	"github.com/microgrpc/microgrpc/resolver/memory"
)

// A greeter service and a client of it, sharing an in-process registry.
// Across processes, leave WithRegistry out (mdns) or run with
// MICRO_REGISTRY=etcd.
func ExampleNewService() {
	reg := memory.NewRegistry()
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	started := make(chan struct{})

	svc := micro.NewService(
		micro.WithName("greeter"),
		micro.WithAddress("127.0.0.1:0"),
		micro.WithRegistry(reg),
		micro.WithContext(ctx),
		micro.WithLogger(slog.New(slog.DiscardHandler)),
		micro.WithAfterStart(func(context.Context) error { close(started); return nil }),
	)
	pb.RegisterGreeterServer(svc.Server(), &greetertest.Server{})
	done := make(chan error)
	go func() { done <- svc.Run() }()
	<-started

	client := micro.NewService(micro.WithName("greeter.client"), micro.WithRegistry(reg))
	defer client.Close()
	greeter := pb.NewGreeterClient(client.Dial("greeter"))

	callCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rsp, err := greeter.Hello(callCtx, &pb.Request{Name: "John"})
	if err != nil {
		fmt.Println("error:", err)
	}
	fmt.Println(rsp.GetMsg())

	stop()
	fmt.Println("stopped:", <-done)
	// Output:
	// Hello John
	// stopped: <nil>
}
