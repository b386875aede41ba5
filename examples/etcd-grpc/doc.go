// Package etcdgrpc holds the test of the etcd-grpc example: a plain grpc-go
// server and client (no micro import) that find each other through etcd.
package etcdgrpc
