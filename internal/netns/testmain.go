package netns

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

// ZeroconfProbe is the goleak option every package that runs zeroconf
// responders needs: zeroconf v1.0.0's Server.probe sleeps through its
// announcement schedule (seconds) and Shutdown cannot interrupt it.
var ZeroconfProbe = goleak.IgnoreAnyFunction("github.com/grandcat/zeroconf.(*Server).probe")

// VerifyTestMain is the TestMain of a package whose tests multicast: it
// runs them inside a private network namespace with goleak's check, and
// exits.
func VerifyTestMain(m *testing.M, opts ...goleak.Option) {
	os.Exit(Main(m, func(m *testing.M) int {
		goleak.VerifyTestMain(m, opts...)
		return 0
	}))
}
