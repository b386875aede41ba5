package certs_test

import (
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/microgrpc/microgrpc/internal/certs"
	"github.com/microgrpc/microgrpc/internal/certs/certstest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func mustCA(t *testing.T, name string) *certstest.CA {
	t.Helper()
	ca, err := certstest.NewCA(name)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

// handshake runs one TLS handshake over loopback TCP and returns the
// server's view and the errors of both sides.
func handshake(t *testing.T, server, client *tls.Config) (*tls.ConnectionState, error, error) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	type result struct {
		st  tls.ConnectionState
		err error
	}
	res := make(chan result, 1)
	go func() {
		c, err := lis.Accept()
		if err != nil {
			res <- result{err: err}
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		srv := tls.Server(c, server)
		err = srv.Handshake()
		if err == nil {
			// TLS 1.3 checks the client's certificate after the client's
			// handshake is done: read once so a refusal happens now.
			srv.Read(make([]byte, 1))
		}
		res <- result{srv.ConnectionState(), err}
	}()
	conn, err := net.Dial("tcp", lis.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	cl := tls.Client(conn, client)
	cerr := cl.Handshake()
	if cerr == nil {
		cl.Write([]byte("x"))
	}
	r := <-res
	return &r.st, cerr, r.err
}

// Mutual TLS with the same CA works; a client of another CA is refused,
// and so is a client without a certificate.
func TestMutualTLS(t *testing.T) {
	dir := t.TempDir()
	ca := mustCA(t, "test-ca")
	sf, _ := ca.Write(dir, "server", certstest.ForHost("greeter"))
	cf, _ := ca.Write(dir, "client", certstest.ForHost("client", "spiffe://test/client"))
	srv, err := certs.New(certs.Files{CertFile: sf.Cert, KeyFile: sf.Key, CAFile: sf.CA}, nil)
	if err != nil {
		t.Fatal(err)
	}
	cli, err := certs.New(certs.Files{CertFile: cf.Cert, KeyFile: cf.Key, CAFile: cf.CA}, nil)
	if err != nil {
		t.Fatal(err)
	}
	cc := cli.ClientConfig()
	cc.ServerName = "greeter"
	st, cerr, serr := handshake(t, srv.ServerConfig(), cc)
	if cerr != nil || serr != nil {
		t.Fatalf("handshake: client %v, server %v", cerr, serr)
	}
	if got := st.PeerCertificates[0].URIs[0].String(); got != "spiffe://test/client" {
		t.Fatalf("server saw client %s", got)
	}
	// Another CA's client.
	other := mustCA(t, "other-ca")
	of, _ := other.Write(dir, "intruder", certstest.ForHost("intruder"))
	in, _ := certs.New(certs.Files{CertFile: of.Cert, KeyFile: of.Key, CAFile: sf.CA}, nil)
	ic := in.ClientConfig()
	ic.ServerName = "greeter"
	if _, _, serr := handshake(t, srv.ServerConfig(), ic); serr == nil {
		t.Fatal("a client certificate of another CA was accepted")
	}
	// No client certificate.
	nc, _ := certs.New(certs.Files{CAFile: sf.CA}, nil)
	ncc := nc.ClientConfig()
	ncc.ServerName = "greeter"
	if _, _, serr := handshake(t, srv.ServerConfig(), ncc); serr == nil {
		t.Fatal("a client without a certificate was accepted")
	}
	// A server of another CA is not trusted by the client.
	osf, _ := other.Write(dir, "other-server", certstest.ForHost("greeter"))
	osrv, _ := certs.New(certs.Files{CertFile: osf.Cert, KeyFile: osf.Key}, nil)
	if _, cerr, _ := handshake(t, osrv.ServerConfig(), cc); cerr == nil || !strings.Contains(cerr.Error(), "unknown authority") {
		t.Fatalf("server of another CA: client error %v, want unknown authority", cerr)
	}
}

// Replaced files are used from the next handshake on, without a restart;
// files that do not load keep the old ones.
func TestRotation(t *testing.T) {
	old := certs.CheckInterval
	certs.CheckInterval = 0
	t.Cleanup(func() { certs.CheckInterval = old })
	dir := t.TempDir()
	ca := mustCA(t, "ca-1")
	f, _ := ca.Write(dir, "server", certstest.ForHost("greeter", "spiffe://test/one"))
	src, err := certs.New(certs.Files{CertFile: f.Cert, KeyFile: f.Key}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	first := src.Certificate().Leaf
	// Rotate to a new certificate (same names, new key).
	time.Sleep(10 * time.Millisecond) // a new modification time
	if _, err := ca.Write(dir, "server", certstest.ForHost("greeter", "spiffe://test/two")); err != nil {
		t.Fatal(err)
	}
	second := src.Certificate().Leaf
	if second == nil || first == nil || second.URIs[0].String() != "spiffe://test/two" {
		t.Fatalf("after rotation: %v, want the new certificate", second)
	}
	// A broken file keeps the last good one.
	if err := writeFile(f.Cert, "not a certificate"); err != nil {
		t.Fatal(err)
	}
	if c := src.Certificate(); c == nil || c.Leaf.URIs[0].String() != "spiffe://test/two" {
		t.Fatalf("after a broken file: %v, want the last good certificate", c)
	}
}

func TestBadFiles(t *testing.T) {
	if _, err := certs.New(certs.Files{CertFile: "x.crt"}, nil); !errors.Is(err, certs.ErrInvalid) {
		t.Fatalf("cert without key: %v", err)
	}
	if _, err := certs.New(certs.Files{CAFile: "/nonexistent/ca.crt"}, nil); !errors.Is(err, certs.ErrInvalid) || !strings.Contains(err.Error(), "nonexistent") {
		t.Fatalf("missing CA file: %v", err)
	}
}

func writeFile(path, data string) error {
	return os.WriteFile(path, []byte(data), 0o600)
}
