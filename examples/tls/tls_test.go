package tls_test

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/microgrpc/microgrpc/internal/etcdtest"
	"github.com/microgrpc/microgrpc/internal/exampletest"
	"github.com/microgrpc/microgrpc/internal/netns"
)

// The programs may use mdns: run in a private network namespace.
func TestMain(m *testing.M) { netns.VerifyTestMain(m) }

// gencerts, then the server and a client with its certificate: the client
// prints the greeting with the identity the server saw. A client without
// a certificate is refused.
func TestMutualTLSGreeter(t *testing.T) {
	dir := t.TempDir()
	gen := exampletest.Start(t, exampletest.Build(t, "./gencerts"), nil, "-dir", dir)
	if err := gen.Wait(); err != nil {
		t.Fatalf("gencerts: %v\n%s", err, gen.Output())
	}
	etcd, err := etcdtest.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(etcd.Close)
	reg := []string{"MICRO_REGISTRY=etcd", "MICRO_REGISTRY_ADDRESS=" + etcd.Endpoint()}
	ca := "MICRO_TLS_CA_FILE=" + filepath.Join(dir, "ca.crt")
	server := exampletest.Start(t, exampletest.Build(t, "./server"), append(reg, ca,
		"MICRO_TLS_CERT_FILE="+filepath.Join(dir, "greeter.crt"), "MICRO_TLS_KEY_FILE="+filepath.Join(dir, "greeter.key")))
	server.WaitFor("service started")
	client := exampletest.Build(t, "./client")
	good := exampletest.Start(t, client, append(reg, ca,
		"MICRO_TLS_CERT_FILE="+filepath.Join(dir, "client.crt"), "MICRO_TLS_KEY_FILE="+filepath.Join(dir, "client.key")))
	if err := good.Wait(); err != nil {
		t.Fatalf("client: %v\n%s", err, good.Output())
	}
	if got := strings.TrimSpace(good.Output()); got != "Hello John (spiffe://example.org/client)" {
		t.Fatalf("client printed %q", got)
	}
	anon := exampletest.Start(t, client, append(reg, ca))
	if err := anon.Wait(); err == nil {
		t.Fatalf("a client without a certificate was served:\n%s", anon.Output())
	}
	if err := server.Stop(); err != nil {
		t.Fatalf("server: %v\n%s", err, server.Output())
	}
}
