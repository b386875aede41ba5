// Package balancer is the home of microgrpc's load-balancing policies; the
// policy itself lives in [github.com/microgrpc/microgrpc/balancer/randomhash],
// go-micro's selector ("random hashed load balancing ... and retry a
// different node if there's a problem") as a balancer registered with
// grpc-go, usable by micro services and plain grpc-go clients alike.
package balancer
