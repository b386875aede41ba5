// Command rawserver is the greeter on grpc-go alone, the baseline of
// bench.BenchmarkCrossProcess: it listens on 127.0.0.1, prints its address
// and serves until its standard input closes.
package main

import "github.com/microgrpc/microgrpc/bench/internal/control"

func main() { control.RawGreeter("raw") }
