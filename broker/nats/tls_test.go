package nats_test

import (
	"context"
	"strings"
	"testing"
	"time"

	natsbroker "github.com/microgrpc/microgrpc/broker/nats"
	"github.com/microgrpc/microgrpc/internal/certs"
	"github.com/microgrpc/microgrpc/internal/certs/certstest"
	"github.com/microgrpc/microgrpc/internal/natstest"
)

// tlsNATS starts a NATS server with TLS on 127.0.0.1 (client
// certificates required), its certificate for leaf, and returns its
// tls:// URL and the material of a client of the same CA.
func tlsNATS(t *testing.T, leaf certstest.Leaf) (string, *certs.Source) {
	t.Helper()
	sf, cf, err := certstest.WritePair(t.TempDir(), leaf)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := natstest.StartTLSFiles(sf.Cert, sf.Key, sf.CA)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { natstest.Stop(srv) })
	src, err := certs.New(certs.Files{CertFile: cf.Cert, KeyFile: cf.Key, CAFile: cf.CA}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return natstest.TLSURL(srv), src
}

// NATS at tls://127.0.0.1 is verified against 127.0.0.1: a server whose
// certificate (of the same CA) is for another name and another IP is
// refused with the reason, and one whose certificate carries 127.0.0.1
// is used.
func TestTLSServerIsCheckedAgainstItsIP(t *testing.T) {
	const wrongHost = "x509: certificate is valid for 192.0.2.1, not 127.0.0.1"
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	url, src := tlsNATS(t, certstest.ForOtherHost("nats.example"))
	b := natsbroker.NewBroker(natsbroker.WithURLs(url), natsbroker.WithTLS(src.ClientConfig()), natsbroker.WithLogger(quiet))
	if err := b.Connect(ctx); err == nil || !strings.Contains(err.Error(), wrongHost) {
		if err == nil {
			b.Disconnect(ctx)
		}
		t.Fatalf("connecting to a NATS server whose certificate is for another host: %v, want an error with %q", err, wrongHost)
	}

	url, src = tlsNATS(t, certstest.ForHost("nats"))
	b = natsbroker.NewBroker(natsbroker.WithURLs(url), natsbroker.WithTLS(src.ClientConfig()), natsbroker.WithLogger(quiet))
	if err := b.Connect(ctx); err != nil {
		t.Fatalf("connecting to a NATS server whose certificate is for 127.0.0.1: %v", err)
	}
	if err := b.Disconnect(ctx); err != nil {
		t.Fatal(err)
	}
}
