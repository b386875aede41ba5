// Command rawlimitsserver is rawserver with the settings every micro
// service's server has: its limits and keepalive policy (micro.ServerLimits,
// micro.ServerKeepalive), its stream workers (micro.DefaultStreamWorkers)
// and its bound on request memory (micro.ServerRequestMemory). It is bench.BenchmarkCrossProcess's second
// baseline, raw grpc-go with micro's settings, so that what the framework
// costs shows apart from what its settings cost or save.
package main

import (
	"google.golang.org/grpc"

	"github.com/microgrpc/microgrpc/bench/internal/control"
	"github.com/microgrpc/microgrpc/micro"
)

func main() {
	opts := append(micro.ServerKeepalive(), micro.ServerLimits()...)
	opts = append(opts, micro.ServerRequestMemory(micro.DefaultMaxRequestMemory)...)
	control.RawGreeter("rawlimits", append(opts, grpc.NumStreamWorkers(micro.DefaultStreamWorkers))...)
}
