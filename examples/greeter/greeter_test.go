package main

import (
	"strings"
	"testing"

	"github.com/microgrpc/microgrpc/internal/etcdtest"
	"github.com/microgrpc/microgrpc/internal/exampletest"
	"github.com/microgrpc/microgrpc/internal/netns"
)

// The programs use mdns by default: everything here runs in a private
// network namespace, and so do the programs the tests start.
func TestMain(m *testing.M) { netns.VerifyTestMain(m) }

func TestOneCommandDemoPrintsHelloJohn(t *testing.T) {
	demo := exampletest.Start(t, exampletest.Build(t, "."), nil)
	if err := demo.Wait(); err != nil {
		t.Fatalf("demo: %v\n%s", err, demo.Output())
	}
	if strings.TrimSpace(demo.Output()) != "Hello John" {
		t.Fatalf("demo printed %q, want exactly Hello John", demo.Output())
	}
}

func runPair(t *testing.T, env []string) {
	t.Helper()
	server := exampletest.Start(t, exampletest.Build(t, "./server"), env)
	server.WaitFor("service started")
	client := exampletest.Start(t, exampletest.Build(t, "./client"), env)
	if err := client.Wait(); err != nil {
		t.Fatalf("client: %v\n%s", err, client.Output())
	}
	if !strings.Contains(client.Output(), "Hello John") {
		t.Fatalf("client printed %q", client.Output())
	}
	if err := server.Stop(); err != nil {
		t.Fatalf("server on SIGTERM: %v\n%s", err, server.Output())
	}
	if !strings.Contains(server.Output(), "service stopped") {
		t.Fatalf("server did not stop in order:\n%s", server.Output())
	}
}

// Server and client as separate processes, no flags: mdns.
func TestServerAndClientWithMDNS(t *testing.T) {
	runPair(t, nil)
}

// The same programs with MICRO_REGISTRY=etcd against a real etcd.
func TestServerAndClientWithEtcd(t *testing.T) {
	srv, err := etcdtest.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	runPair(t, []string{"MICRO_REGISTRY=etcd", "MICRO_REGISTRY_ADDRESS=" + srv.Endpoint()})
}
