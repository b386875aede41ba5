package controlplane_test

import (
	"os"
	"testing"

	"go.uber.org/goleak"

	_ "github.com/microgrpc/microgrpc/plugins/etcd" // the node processes use --registry=etcd
)

func TestMain(m *testing.M) {
	if os.Getenv(envNode) != "" {
		os.Exit(runNode())
	}
	goleak.VerifyTestMain(m)
}
