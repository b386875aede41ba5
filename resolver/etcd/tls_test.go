package etcd_test

import (
	"context"
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
	dir := t.TempDir()
	ca, err := certstest.NewCA("ca")
	if err != nil {
		t.Fatal(err)
	}
	sf, err := ca.Write(dir, "etcd", leaf)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := ca.Write(dir, "client", certstest.ForHost("client"))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := etcdtest.StartTLS(etcdtest.TLSFiles{Cert: sf.Cert, Key: sf.Key, CA: sf.CA})
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
	srv, src := tlsEtcd(t, certstest.ForOtherHost("etcd.example"))
	r := newRegistry(t, "https://"+srv.Endpoint(), etcd.WithTLS(src.ClientConfig()), etcd.WithDialTimeout(2*time.Second))
	rctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	err := r.Register(rctx, node("a", "127.0.0.1:1"))
	if err == nil || !strings.Contains(err.Error(), wrongHost) {
		t.Fatalf("registering in an etcd whose certificate is for another host: %v, want an error with %q", err, wrongHost)
	}

	srv, src = tlsEtcd(t, certstest.ForHost("etcd"))
	r = newRegistry(t, "https://"+srv.Endpoint(), etcd.WithTLS(src.ClientConfig()))
	if err := r.Register(ctx(t), node("a", "127.0.0.1:1")); err != nil {
		t.Fatalf("registering in an etcd whose certificate is for 127.0.0.1: %v", err)
	}
}
