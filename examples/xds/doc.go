// Package xds holds the test of the xds example: a greeter registered in
// etcd, micro xds serving the registry, and a plain grpc-go client that
// dials xds:///greeter.
package xds
