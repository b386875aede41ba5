// Package bench holds microgrpc's cross-cutting benchmarks: a call through
// micro.Service.Dial against the same call made with grpc-go alone, in the
// same process and the same run, so that the ratio survives a noisy machine.
//
//	go test -run '^$' -bench . -benchmem ./bench
package bench
