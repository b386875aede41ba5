package plugins_test

import (
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/microgrpc/microgrpc/internal/exampletest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The server and the client are separate processes that find each other
// through the third-party "file" registry, selected by flag and by
// environment.
func TestFileRegistryPlugin(t *testing.T) {
	dir := t.TempDir()
	server := exampletest.Start(t, exampletest.Build(t, "./server"), nil, "--registry=file", "--registry_address="+dir)
	server.WaitFor("service started")

	client := exampletest.Start(t, exampletest.Build(t, "./client"), []string{"MICRO_REGISTRY=file", "MICRO_REGISTRY_ADDRESS=" + dir})
	if err := client.Wait(); err != nil {
		t.Fatalf("client: %v\n%s", err, client.Output())
	}
	if !strings.Contains(client.Output(), "Hello John") {
		t.Fatalf("client printed %q, want Hello John", client.Output())
	}
	if err := server.Stop(); err != nil {
		t.Fatalf("server did not stop cleanly on SIGTERM: %v\n%s", err, server.Output())
	}
	if !strings.Contains(server.Output(), "service stopped") {
		t.Fatalf("server output: %s", server.Output())
	}
}

func TestUnknownPluginNamesKnownOnes(t *testing.T) {
	client := exampletest.Start(t, exampletest.Build(t, "./client"), nil, "--registry=consul")
	if err := client.Wait(); err == nil {
		t.Fatal("client with an unknown registry exited 0")
	}
	for _, want := range []string{`"consul"`, "file", "memory"} {
		if !strings.Contains(client.Output(), want) {
			t.Errorf("output %q does not mention %s", client.Output(), want)
		}
	}
}
