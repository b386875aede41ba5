//go:build race

package reqmem_test

// The race detector slows grpc-go's copying of large requests tenfold or
// more: the race build sends smaller ones, in the same proportion to the
// budget.
const largeRequest = 1 << 20
