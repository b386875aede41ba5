package http_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"testing"
	"time"

	"github.com/microgrpc/microgrpc/broker"
	"github.com/microgrpc/microgrpc/broker/brokertest"
	httpbroker "github.com/microgrpc/microgrpc/broker/http"
	"github.com/microgrpc/microgrpc/resolver/memory"
)

// selfSigned returns a server config for 127.0.0.1 and a client config
// trusting it.
func selfSigned(t *testing.T) (*tls.Config, *tls.Config) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "microgrpc test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	server := &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}, MinVersion: tls.VersionTLS12}
	return server, &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
}

// Over TLS delivery works, and a publisher that does not trust the
// subscriber's certificate cannot deliver.
func TestTLS(t *testing.T) {
	serverCfg, clientCfg := selfSigned(t)
	reg := memory.NewRegistry()
	f := func(t *testing.T) broker.Broker {
		return httpbroker.NewBroker(httpbroker.WithRegistry(reg), httpbroker.WithAddress("127.0.0.1:0"),
			httpbroker.WithTLS(serverCfg, clientCfg), httpbroker.WithLogger(quiet))
	}
	pub, sub := brokertest.New(t, f), brokertest.New(t, f)
	got := make(chan string, 1)
	if _, err := sub.Subscribe("secure", func(ctx context.Context, e broker.Event) error {
		got <- string(e.Message().Body)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), brokertest.Timeout)
	defer cancel()
	if err := pub.Publish(ctx, "secure", &broker.Message{Body: []byte("over tls")}); err != nil {
		t.Fatal(err)
	}
	select {
	case b := <-got:
		if b != "over tls" {
			t.Fatalf("got %q", b)
		}
	case <-ctx.Done():
		t.Fatal("not delivered")
	}
	// A publisher that does not trust the certificate cannot deliver.
	untrusting := brokertest.New(t, func(t *testing.T) broker.Broker {
		return httpbroker.NewBroker(httpbroker.WithRegistry(reg), httpbroker.WithAddress("127.0.0.1:0"),
			httpbroker.WithTLS(nil, &tls.Config{MinVersion: tls.VersionTLS12}), httpbroker.WithLogger(quiet))
	})
	if err := untrusting.Publish(ctx, "secure", &broker.Message{Body: []byte("x")}); err == nil {
		t.Fatal("delivered to a server whose certificate is not trusted")
	}
}
