package etcdgrpc_test

import (
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/microgrpc/microgrpc/internal/etcdtest"
	"github.com/microgrpc/microgrpc/internal/exampletest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestPlainGRPCClientResolvesEtcdTarget(t *testing.T) {
	srv, err := etcdtest.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	env := []string{"MICRO_REGISTRY_ADDRESS=" + srv.Endpoint()}
	server := exampletest.Start(t, exampletest.Build(t, "./server"), env)
	server.WaitFor("registered in etcd")
	client := exampletest.Start(t, exampletest.Build(t, "./client"), env)
	if err := client.Wait(); err != nil {
		t.Fatalf("client: %v\n%s", err, client.Output())
	}
	if strings.TrimSpace(client.Output()) != "Hello John" {
		t.Fatalf("client printed %q", client.Output())
	}
	if err := server.Stop(); err != nil {
		t.Fatalf("server: %v\n%s", err, server.Output())
	}
}
