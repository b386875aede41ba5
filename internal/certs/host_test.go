package certs_test

import (
	"context"
	"crypto/tls"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/microgrpc/microgrpc/internal/certs"
	"github.com/microgrpc/microgrpc/internal/certs/certstest"
)

// wrongHost is the x509 refusal of a certificate that names another host
// than 127.0.0.1.
const wrongHost = "x509: certificate is valid for 192.0.2.1, not 127.0.0.1"

// sources returns the material of a server whose certificate is for
// leaf, and of a client, both of one CA.
func sources(t *testing.T, leaf certstest.Leaf) (server, client *certs.Source) {
	t.Helper()
	sf, cf, err := certstest.WritePair(t.TempDir(), leaf)
	if err != nil {
		t.Fatal(err)
	}
	if server, err = certs.New(certs.Files{CertFile: sf.Cert, KeyFile: sf.Key, CAFile: sf.CA}, nil); err != nil {
		t.Fatal(err)
	}
	if client, err = certs.New(certs.Files{CertFile: cf.Cert, KeyFile: cf.Key, CAFile: cf.CA}, nil); err != nil {
		t.Fatal(err)
	}
	return server, client
}

// A server dialled by IP is verified against that IP, as crypto/tls does
// it: a certificate of the same CA for another name and another IP is
// refused, one that carries 127.0.0.1 is accepted, and a configuration
// that names no server at all verifies nothing and so fails.
func TestServerDialledByIPIsCheckedAgainstTheIP(t *testing.T) {
	srv, cli := sources(t, certstest.ForOtherHost("registry.example"))
	cc := cli.ClientConfig()
	cc.ServerName = "127.0.0.1" // what grpc-go, nats.go and net/http set for https://127.0.0.1
	if _, cerr, _ := handshake(t, srv.ServerConfig(), cc); cerr == nil || !strings.Contains(cerr.Error(), wrongHost) {
		t.Fatalf("a certificate for another host, dialled at 127.0.0.1: client error %v, want %q", cerr, wrongHost)
	}
	// No server name: refused before a byte is sent.
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if err := tls.Client(a, cli.ClientConfig()).Handshake(); err == nil || !strings.Contains(err.Error(), "ServerName") {
		t.Fatalf("a configuration without a server name: %v, want a refusal that names ServerName", err)
	}

	good, cli := sources(t, certstest.ForHost("registry"))
	cc = cli.ClientConfig()
	cc.ServerName = "127.0.0.1"
	if _, cerr, serr := handshake(t, good.ServerConfig(), cc); cerr != nil || serr != nil {
		t.Fatalf("a certificate for 127.0.0.1, dialled at 127.0.0.1: client %v, server %v", cerr, serr)
	}
}

// healthServer serves gRPC health with TLS of src on 127.0.0.1 and
// returns its address.
func healthServer(t *testing.T, src *certs.Source) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer(grpc.Creds(credentials.NewTLS(src.ServerConfig("h2"))))
	healthpb.RegisterHealthServer(s, health.NewServer())
	go s.Serve(lis)
	t.Cleanup(s.Stop)
	return lis.Addr().String()
}

func check(t *testing.T, addr string, creds credentials.TransportCredentials) error {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	return err
}

// A plain gRPC dial by IP verifies the server against that IP, with the
// credentials that follow the files (ClientCredentials) and with
// grpc-go's own over ClientConfig.
func TestGRPCDialByIPIsCheckedAgainstTheIP(t *testing.T) {
	srv, cli := sources(t, certstest.ForOtherHost("greeter.example"))
	bad := healthServer(t, srv)
	good, gcli := sources(t, certstest.ForHost("greeter"))
	ok := healthServer(t, good)
	for name, creds := range map[string]func(*certs.Source) credentials.TransportCredentials{
		"ClientCredentials":    func(s *certs.Source) credentials.TransportCredentials { return s.ClientCredentials() },
		"NewTLS(ClientConfig)": func(s *certs.Source) credentials.TransportCredentials { return credentials.NewTLS(s.ClientConfig()) },
	} {
		t.Run(name, func(t *testing.T) {
			err := check(t, bad, creds(cli))
			if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), wrongHost) {
				t.Fatalf("a server with a certificate for another host, dialled at %s: %v, want Unavailable with %q", bad, err, wrongHost)
			}
			if err := check(t, ok, creds(gcli)); err != nil {
				t.Fatalf("a server with a certificate for 127.0.0.1, dialled at %s: %v", ok, err)
			}
		})
	}
}

// ClientCredentials follow a rotated CA: a connection made after the CA
// file changed verifies against the new CA.
func TestClientCredentialsFollowTheCA(t *testing.T) {
	old := certs.CheckInterval
	certs.CheckInterval = 0
	t.Cleanup(func() { certs.CheckInterval = old })
	dir := t.TempDir()
	oldCA, newCA := mustCA(t, "ca-1"), mustCA(t, "ca-2")
	sf, err := newCA.Write(dir, "server", certstest.ForHost("greeter"))
	if err != nil {
		t.Fatal(err)
	}
	cf, err := oldCA.Write(dir, "client", certstest.ForHost("client"))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := certs.New(certs.Files{CertFile: sf.Cert, KeyFile: sf.Key}, nil)
	if err != nil {
		t.Fatal(err)
	}
	cli, err := certs.New(certs.Files{CAFile: cf.CA}, nil)
	if err != nil {
		t.Fatal(err)
	}
	addr := healthServer(t, srv)
	creds := cli.ClientCredentials()
	if err := check(t, addr, creds); err == nil || !strings.Contains(err.Error(), "unknown authority") {
		t.Fatalf("before the CA rotation: %v, want unknown authority", err)
	}
	time.Sleep(10 * time.Millisecond) // a new modification time
	if err := writeFile(cf.CA, string(newCA.CertPEM)); err != nil {
		t.Fatal(err)
	}
	if err := check(t, addr, creds); err != nil {
		t.Fatalf("after the CA rotation: %v", err)
	}
}
