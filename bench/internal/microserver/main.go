// Command microserver is the greeter as a micro.Service with its defaults
// (a memory registry, so that the benchmark needs no multicast), measured
// by bench.BenchmarkCrossProcess against rawserver: it listens on
// 127.0.0.1, prints its address and serves until its standard input
// closes.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"

	"github.com/microgrpc/microgrpc/bench/internal/control"
	"github.com/microgrpc/microgrpc/internal/greetertest"
	"github.com/microgrpc/microgrpc/micro"
	pb "github.com/microgrpc/microgrpc/proto/greeter"
	"github.com/microgrpc/microgrpc/resolver/memory"
)

func main() {
	defer control.CPUProfile("micro")()
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		control.Serve(os.Stdin, os.Stdout)
		cancel()
	}()
	var svc *micro.Service
	svc = micro.NewService(micro.WithName("greeter"), micro.WithAddress("127.0.0.1:0"), micro.WithRegistry(memory.NewRegistry()),
		micro.WithContext(ctx), micro.WithSignal(false), micro.WithDeregisterWait(0), micro.WithLogger(slog.New(slog.DiscardHandler)),
		micro.WithAfterStart(func(context.Context) error { fmt.Println(svc.Address()); return nil }))
	pb.RegisterGreeterServer(svc.Server(), &greetertest.Server{Node: "micro"})
	if err := svc.Run(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return
	}
}
