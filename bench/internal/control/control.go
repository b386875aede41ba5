// Package control is how bench.BenchmarkCrossProcess talks to its server
// processes: over their standard input and output, one line each way.
package control

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"runtime/pprof"
	"syscall"
	"time"

	"google.golang.org/grpc"

	"github.com/microgrpc/microgrpc/internal/greetertest"
	pb "github.com/microgrpc/microgrpc/proto/greeter"
)

// Serve answers the benchmark until in closes: to "cpu" it writes the
// process's user+system CPU time in nanoseconds (from getrusage, to the
// microsecond, where /proc counts 10 ms ticks).
func Serve(in io.Reader, out io.Writer) {
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		if sc.Text() == "cpu" {
			fmt.Fprintln(out, CPU().Nanoseconds())
		}
	}
}

// CPU returns the calling process's user+system CPU time.
func CPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// CPUProfile starts a CPU profile of the whole run when
// MICROGRPC_BENCH_CPUPROFILE names a file (the name gains "."+kind), to see
// where a server spends its time under load; the returned func ends it.
func CPUProfile(kind string) (stop func()) {
	path := os.Getenv("MICROGRPC_BENCH_CPUPROFILE")
	if path == "" {
		return func() {}
	}
	f, err := os.Create(path + "." + kind)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	pprof.StartCPUProfile(f)
	return func() { pprof.StopCPUProfile(); f.Close() }
}

// RawGreeter is the main of the grpc-go servers: the greeter on
// grpc.NewServer(opts...), listening on 127.0.0.1, its address printed,
// served until standard input closes, profiled with CPUProfile(kind).
func RawGreeter(kind string, opts ...grpc.ServerOption) {
	defer CPUProfile(kind)()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	s := grpc.NewServer(opts...)
	pb.RegisterGreeterServer(s, &greetertest.Server{Node: kind})
	go s.Serve(lis)
	fmt.Println(lis.Addr())
	Serve(os.Stdin, os.Stdout)
	s.Stop()
}
