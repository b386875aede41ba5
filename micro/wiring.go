package micro

import (
	"google.golang.org/grpc"
)

// balancerDialOptions select the load-balancing policy and retry policy.
// TODO(balancer): switch to balancer/randomhash once it lands.
func balancerDialOptions() []grpc.DialOption {
	return []grpc.DialOption{grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"round_robin":{}}]}`)}
}

// strictCodecOption refuses calls whose content-subtype has no codec.
// TODO(codec): use the codec package's tap handle once it lands.
func strictCodecOption() grpc.ServerOption { return grpc.EmptyServerOption{} }
