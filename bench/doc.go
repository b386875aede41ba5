// Package bench holds microgrpc's cross-cutting benchmarks: a call through
// micro.Service.Dial against the same call made with grpc-go alone, in the
// same run, so that the ratio survives a noisy machine.
//
// BenchmarkCrossProcess measures it the way users run it: each server a
// program of its own (internal/rawserver, internal/rawlimitsserver: grpc-go
// with micro's settings, internal/microserver), the callers in the benchmark
// process, 100 ms slices rotating between them, the server processes
// started afresh every round, CPU of client and server and the servers'
// peak RSS reported, medians with their spread:
//
//	go test -run '^$' -bench CrossProcess -benchtime 15x ./bench
//
// BenchmarkHello and BenchmarkHelloRatio run both sides in one process:
//
//	go test -run '^$' -bench Hello -benchmem ./bench
package bench
