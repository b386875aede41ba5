//go:build !race

package reqmem_test

const largeRequest = 4 << 20
