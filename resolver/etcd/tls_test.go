package etcd_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/microgrpc/microgrpc/internal/certs"
	"github.com/microgrpc/microgrpc/internal/certs/certstest"
	"github.com/microgrpc/microgrpc/internal/etcdtest"
	"github.com/microgrpc/microgrpc/resolver/etcd"
)

// tlsEtcd starts etcd with TLS on 127.0.0.1, its certificate for leaf,
// and returns it and the material of a client of the same CA.
func tlsEtcd(t *testing.T, leaf certstest.Leaf) (*etcdtest.Server, *certs.Source) {
	t.Helper()
	sf, cf, err := certstest.WritePair(t.TempDir(), leaf)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := etcdtest.StartTLS(etcdtest.TLSFiles(sf))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	src, err := certs.New(certs.Files{CertFile: cf.Cert, KeyFile: cf.Key, CAFile: cf.CA}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return srv, src
}

// etcd at https://127.0.0.1 is verified against 127.0.0.1: an etcd whose
// certificate (of the same CA) is for another name and another IP is
// refused, and the error says why; one whose certificate carries
// 127.0.0.1 is used.
func TestTLSEtcdIsCheckedAgainstItsIP(t *testing.T) {
	const wrongHost = "x509: certificate is valid for 192.0.2.1, not 127.0.0.1"
	bad, badSrc := tlsEtcd(t, certstest.ForOtherHost("etcd.example"))
	good, goodSrc := tlsEtcd(t, certstest.ForHost("etcd"))
	for name, tlsOpt := range map[string]func(*certs.Source) etcd.Option{
		"WithTLS": func(s *certs.Source) etcd.Option { return etcd.WithTLS(s.ClientConfig()) },
		"WithTransportCredentials": func(s *certs.Source) etcd.Option {
			return etcd.WithTransportCredentials(s.ClientCredentials())
		},
	} {
		t.Run(name, func(t *testing.T) {
			r := newRegistry(t, "https://"+bad.Endpoint(), tlsOpt(badSrc), etcd.WithDialTimeout(2*time.Second))
			rctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			err := r.Register(rctx, node("a", "127.0.0.1:1"))
			if err == nil || !strings.Contains(err.Error(), wrongHost) {
				t.Fatalf("registering in an etcd whose certificate is for another host: %v, want an error with %q", err, wrongHost)
			}
			r = newRegistry(t, "https://"+good.Endpoint(), tlsOpt(goodSrc))
			if err := r.Register(ctx(t), node("a", "127.0.0.1:1")); err != nil {
				t.Fatalf("registering in an etcd whose certificate is for 127.0.0.1: %v", err)
			}
		})
	}
}

// With WithTransportCredentials of certs, the connection to etcd follows
// a rotated CA: an etcd whose certificate the client's CA file does not
// sign is refused, and used once the CA file holds its CA, without a new
// registry.
func TestTLSEtcdFollowsARotatedCA(t *testing.T) {
	old := certs.CheckInterval
	certs.CheckInterval = 0
	t.Cleanup(func() { certs.CheckInterval = old })
	dir := t.TempDir()
	oldCA, err := certstest.NewCA("old-ca")
	if err != nil {
		t.Fatal(err)
	}
	newCA, err := certstest.NewCA("new-ca")
	if err != nil {
		t.Fatal(err)
	}
	sf, err := newCA.Write(dir, "etcd", certstest.ForHost("etcd"))
	if err != nil {
		t.Fatal(err)
	}
	cf, err := newCA.Write(dir, "client", certstest.ForHost("client"))
	if err != nil {
		t.Fatal(err)
	}
	trust := filepath.Join(dir, "trust.crt") // the client's CA file, the old CA's at first
	if err := os.WriteFile(trust, oldCA.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	srv, err := etcdtest.StartTLS(etcdtest.TLSFiles(sf))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	src, err := certs.New(certs.Files{CertFile: cf.Cert, KeyFile: cf.Key, CAFile: trust}, quiet)
	if err != nil {
		t.Fatal(err)
	}
	r := newRegistry(t, "https://"+srv.Endpoint(), etcd.WithTransportCredentials(src.ClientCredentials()), etcd.WithDialTimeout(2*time.Second))
	rctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := r.Register(rctx, node("a", "127.0.0.1:1")); err == nil {
		t.Fatal("registered in an etcd whose certificate the client's CA does not sign")
	}
	time.Sleep(10 * time.Millisecond) // a new modification time
	if err := os.WriteFile(trust, newCA.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := r.Register(ctx(t), node("a", "127.0.0.1:1")); err != nil {
		t.Fatalf("after the CA file was rotated: %v", err)
	}
}
