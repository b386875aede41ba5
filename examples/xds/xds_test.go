package xds_test

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/microgrpc/microgrpc/internal/etcdtest"
	"github.com/microgrpc/microgrpc/internal/exampletest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestPlainGRPCClientDialsXDSTarget(t *testing.T) {
	srv, err := etcdtest.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	env := []string{"MICRO_REGISTRY=etcd", "MICRO_REGISTRY_ADDRESS=" + srv.Endpoint()}
	server := exampletest.Start(t, exampletest.Build(t, "../greeter/server"), env)
	server.WaitFor("service started")

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	micro := exampletest.Build(t, "github.com/microgrpc/microgrpc/cmd/micro")
	cp := exampletest.Start(t, micro, env, "xds", "--address", addr)
	cp.WaitFor("xDS control plane")
	boot := exampletest.Start(t, micro, env, "xds", "bootstrap", "--address", addr)
	if err := boot.Wait(); err != nil {
		t.Fatalf("micro xds bootstrap: %v\n%s", err, boot.Output())
	}
	file := filepath.Join(t.TempDir(), "bootstrap.json")
	if err := os.WriteFile(file, []byte(boot.Output()), 0o600); err != nil {
		t.Fatal(err)
	}

	client := exampletest.Start(t, exampletest.Build(t, "./client"), []string{"GRPC_XDS_BOOTSTRAP=" + file})
	if err := client.Wait(); err != nil {
		t.Fatalf("client: %v\n%s", err, client.Output())
	}
	if strings.TrimSpace(client.Output()) != "Hello John" {
		t.Fatalf("client printed %q", client.Output())
	}
	if err := cp.Stop(); err != nil {
		t.Errorf("micro xds: %v\n%s", err, cp.Output())
	}
	if err := server.Stop(); err != nil {
		t.Errorf("server: %v\n%s", err, server.Output())
	}
}
