package mdns_test

import (
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/microgrpc/microgrpc/internal/netns"
)

// Every test here multicasts, so every test runs inside a private network
// namespace with nothing but loopback.
func TestMain(m *testing.M) {
	os.Exit(netns.Main(m, func(m *testing.M) int {
		if os.Getenv(helperEnv) != "" {
			return m.Run() // a helper process: no leak check
		}
		goleak.VerifyTestMain(m,
			// zeroconf v1.0.0's Server.probe sleeps through its announcement
			// schedule (seconds) and Shutdown cannot interrupt it.
			goleak.IgnoreTopFunction("time.Sleep"),
			goleak.IgnoreAnyFunction("github.com/grandcat/zeroconf.(*Server).probe"),
		)
		return 0
	}))
}
