package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/microgrpc/microgrpc/internal/certs/certstest"
	"github.com/microgrpc/microgrpc/internal/etcdtest"
	"github.com/microgrpc/microgrpc/internal/exampletest"
)

// With the three TLS settings the gateway serves HTTPS, requires a client
// certificate from the CA (mutual TLS, as services do), and calls nodes
// that serve TLS with the same files.
func TestGatewayTLS(t *testing.T) {
	etcd, err := etcdtest.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(etcd.Close)
	ca, err := certstest.NewCA("gateway-test")
	if err != nil {
		t.Fatal(err)
	}
	files, err := ca.Write(t.TempDir(), "greeter", certstest.ForHost("greeter"))
	if err != nil {
		t.Fatal(err)
	}
	env := []string{"MICRO_REGISTRY=etcd", "MICRO_REGISTRY_ADDRESS=" + etcd.Endpoint(),
		"MICRO_TLS_CERT_FILE=" + files.Cert, "MICRO_TLS_KEY_FILE=" + files.Key, "MICRO_TLS_CA_FILE=" + files.CA}
	startNode(t, "n1", env)
	c := &cli{t: t, bin: exampletest.Build(t, "github.com/microgrpc/microgrpc/cmd/micro"), env: env}
	gw := c.start("gateway", "--address", "127.0.0.1:0")
	gw.WaitFor("); Ctrl-C to stop")
	_, rest, _ := strings.Cut(gw.Output(), "micro gateway: serving ")
	base, _, _ := strings.Cut(rest, " ")
	if !strings.HasPrefix(base, "https://") {
		t.Fatalf("micro gateway with TLS files serves %q:\n%s", base, gw.Output())
	}
	caPEM, err := os.ReadFile(files.CA)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	cert, err := tls.LoadX509KeyPair(files.Cert, files.Key)
	if err != nil {
		t.Fatal(err)
	}
	post := func(certs []tls.Certificate) (string, error) {
		hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: certs}}}
		defer hc.CloseIdleConnections()
		ctx, cancel := context.WithTimeout(context.Background(), cliTimeout)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/api/greeter/Greeter.Hello", strings.NewReader(`{"name":"John"}`))
		rsp, err := hc.Do(req)
		if err != nil {
			return "", err
		}
		defer rsp.Body.Close()
		body, err := io.ReadAll(rsp.Body)
		return string(body), err
	}
	body, err := post([]tls.Certificate{cert})
	var g struct{ Msg, Node string }
	if err != nil || json.Unmarshal([]byte(body), &g) != nil || g.Msg != "Hello John" || g.Node != "n1" {
		t.Fatalf("HTTPS with a client certificate: %v %s\n%s", err, body, gw.Output())
	}
	if body, err := post(nil); err == nil {
		t.Fatalf("HTTPS without a client certificate answered %s", body)
	}
}
