package micro_test

import (
	"testing"

	"github.com/microgrpc/microgrpc/internal/netns"
)

// The default registry is mdns, which multicasts: the package's tests run
// inside a private network namespace, so a test that forgets to pass a
// registry still sends nothing off the machine.
func TestMain(m *testing.M) { netns.VerifyTestMain(m, netns.ZeroconfProbe) }
