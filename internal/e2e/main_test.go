package e2e

import (
	"os"
	"testing"

	"go.uber.org/goleak"

	_ "github.com/microgrpc/microgrpc/plugins/etcd" // the nodes use --registry=etcd
)

func TestMain(m *testing.M) {
	if os.Getenv(envNode) != "" {
		os.Exit(runNode())
	}
	if os.Getenv(envSubscriber) != "" {
		os.Exit(runSubscriber())
	}
	goleak.VerifyTestMain(m)
}
