// Command rawlimitsserver is rawserver with the limits and keepalive
// policy every micro service's server has (micro.ServerLimits,
// micro.ServerKeepalive): bench.BenchmarkCrossProcess's second baseline,
// raw grpc-go with micro's settings, so that what the framework costs
// shows apart from what its limits cost.
package main

import (
	"github.com/microgrpc/microgrpc/bench/internal/control"
	"github.com/microgrpc/microgrpc/micro"
)

func main() {
	control.RawGreeter("rawlimits", append(micro.ServerKeepalive(), micro.ServerLimits()...)...)
}
