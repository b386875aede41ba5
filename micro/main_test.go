package micro_test

import (
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/microgrpc/microgrpc/internal/netns"
)

// The default registry is mdns, which multicasts: the package's tests run
// inside a private network namespace, so a test that forgets to pass a
// registry still sends nothing off the machine.
func TestMain(m *testing.M) {
	os.Exit(netns.Main(m, func(m *testing.M) int {
		goleak.VerifyTestMain(m,
			// zeroconf v1.0.0's Server.probe sleeps through its announcement
			// schedule and Shutdown cannot interrupt it.
			goleak.IgnoreAnyFunction("github.com/grandcat/zeroconf.(*Server).probe"))
		return 0
	}))
}
