package micro_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/microgrpc/microgrpc/internal/certs"
	"github.com/microgrpc/microgrpc/internal/certs/certstest"
	"github.com/microgrpc/microgrpc/internal/etcdtest"
	"github.com/microgrpc/microgrpc/internal/natstest"
	"github.com/microgrpc/microgrpc/micro"
	pb "github.com/microgrpc/microgrpc/proto/greeter"
	"github.com/microgrpc/microgrpc/resolver/memory"
)

// wrongHost is the refusal of a certificate for another host than the
// 127.0.0.1 dialled.
const wrongHost = "x509: certificate is valid for 192.0.2.1, not 127.0.0.1"

// With TLS on, a service's etcd (https://127.0.0.1) and NATS
// (tls://127.0.0.1) are verified against the IP dialled: servers whose
// certificates, of the service's CA, are for another name and another IP
// are refused, and the errors say so.
func TestTLSRegistryAndBrokerAreCheckedAgainstTheIP(t *testing.T) {
	p := newPKI(t, "ca")
	ef, err := p.ca.Write(p.dir, "etcd", certstest.ForOtherHost("etcd.example"))
	if err != nil {
		t.Fatal(err)
	}
	etcd, err := etcdtest.StartTLS(etcdtest.TLSFiles{Cert: ef.Cert, Key: ef.Key, CA: ef.CA})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(etcd.Close)
	svc := micro.NewService(micro.WithName("client"), micro.WithLogger(quietLogger),
		micro.WithRegistryPlugin("etcd", "https://"+etcd.Endpoint()), withTLS(p.client))
	defer svc.Close()
	reg, err := svc.Registry()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if _, err := reg.GetService(ctx, "greeter"); err == nil || !strings.Contains(err.Error(), wrongHost) {
		t.Fatalf("etcd with a certificate for another host: %v, want an error with %q", err, wrongHost)
	}

	nf, err := p.ca.Write(p.dir, "nats", certstest.ForOtherHost("nats.example"))
	if err != nil {
		t.Fatal(err)
	}
	src, err := certs.New(certs.Files{CertFile: nf.Cert, KeyFile: nf.Key, CAFile: nf.CA}, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg := src.ServerConfig()
	cfg.ClientCAs = src.Pool()
	ns, err := natstest.StartTLS(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { natstest.Stop(ns) })
	pub := newClient(t, memory.NewRegistry(), withTLS(p.client),
		micro.WithBrokerPlugin("nats", strings.Replace(ns.ClientURL(), "nats://", "tls://", 1)))
	if err := micro.NewPublisher("events", pub).Publish(testCtx(t), &pb.Event{Id: "x"}); err == nil || !strings.Contains(err.Error(), wrongHost) {
		t.Fatalf("NATS with a certificate for another host: %v, want an error with %q", err, wrongHost)
	}
}
