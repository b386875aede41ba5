package micro

import (
	"google.golang.org/grpc"

	"github.com/microgrpc/microgrpc/codec"
)

// balancerDialOptions select the load-balancing policy and retry policy.
// TODO(balancer): switch to balancer/randomhash once it lands.
func balancerDialOptions() []grpc.DialOption {
	return []grpc.DialOption{grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"round_robin":{}}]}`)}
}

// strictCodecOption refuses calls whose content-subtype has no codec.
func strictCodecOption() grpc.ServerOption { return grpc.InTapHandle(codec.StrictServerTap(nil)) }
