//go:build !linux

package netns

import (
	"errors"
	"fmt"
	"os"
	"testing"
)

// ErrUnsupported is returned where network namespaces do not exist.
var ErrUnsupported = errors.New("netns: private network namespaces need Linux")

// Inside reports false: there is no namespace off Linux.
func Inside() bool { return false }

// Main skips the tests: they multicast, and without a private network
// namespace they must not run.
func Main(m *testing.M, run func(*testing.M) int) int {
	fmt.Fprintln(os.Stderr, "skipping these tests:", ErrUnsupported)
	return 0
}

// Enter fails: the program must not multicast outside a namespace.
func Enter() error { return ErrUnsupported }

// CheckPrivate fails off Linux.
func CheckPrivate() error { return ErrUnsupported }
