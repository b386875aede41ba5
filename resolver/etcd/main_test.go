package etcd_test

import (
	"fmt"
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/microgrpc/microgrpc/internal/etcdtest"
)

// server is the etcd shared by the package's tests; each test uses its own
// key prefix.
var server *etcdtest.Server

func TestMain(m *testing.M) {
	var err error
	if server, err = etcdtest.Start(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	server.Close()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}
