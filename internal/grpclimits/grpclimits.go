// Package grpclimits holds the keepalive and limit options of every gRPC
// server microgrpc starts: a micro service's (micro.ServerLimits,
// micro.ServerKeepalive document them) and the one a broker starts for
// its deliveries when no service's server is there to carry them.
package grpclimits

import (
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"
)

// The values; micro re-exports them as its Default* constants.
const (
	KeepaliveTime        = 10 * time.Second
	KeepaliveTimeout     = 3 * time.Second
	KeepaliveMinTime     = 5 * time.Second
	MaxConcurrentStreams = 1000
	ConnectionTimeout    = 10 * time.Second
	MaxConnectionIdle    = 5 * time.Minute
	MaxRecvMsgSize       = 4 << 20
)

// Keepalive returns the server's keepalive policy and parameters.
func Keepalive() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: KeepaliveMinTime, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 2 * KeepaliveTime, Timeout: 2 * KeepaliveTimeout,
			MaxConnectionIdle: MaxConnectionIdle}),
	}
}

// Limits returns the bounds on streams, handshakes and message sizes.
func Limits() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.MaxConcurrentStreams(MaxConcurrentStreams),
		grpc.ConnectionTimeout(ConnectionTimeout),
		grpc.MaxRecvMsgSize(MaxRecvMsgSize),
	}
}
