package e2e

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if os.Getenv(envNode) != "" {
		os.Exit(runNode())
	}
	goleak.VerifyTestMain(m)
}
