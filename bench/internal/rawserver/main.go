// Command rawserver is the greeter on grpc-go alone, the baseline of
// bench.BenchmarkCrossProcess: it listens on 127.0.0.1, prints its address
// and serves until its standard input closes.
package main

import (
	"fmt"
	"net"
	"os"
	"runtime/pprof"

	"google.golang.org/grpc"

	"github.com/microgrpc/microgrpc/bench/internal/control"
	"github.com/microgrpc/microgrpc/internal/greetertest"
	pb "github.com/microgrpc/microgrpc/proto/greeter"
)

func main() {
	// MICROGRPC_BENCH_CPUPROFILE names a file for a CPU profile of the
	// whole run (the name gains ".raw"), to see where a server spends its
	// time under load.
	if path := os.Getenv("MICROGRPC_BENCH_CPUPROFILE"); path != "" {
		f, err := os.Create(path + ".raw")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		pprof.StartCPUProfile(f)
		defer func() { pprof.StopCPUProfile(); f.Close() }()
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	s := grpc.NewServer()
	pb.RegisterGreeterServer(s, &greetertest.Server{Node: "raw"})
	go s.Serve(lis)
	fmt.Println(lis.Addr())
	control.Serve(os.Stdin, os.Stdout)
	s.Stop()
}
