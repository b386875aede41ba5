package micro_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/microgrpc/microgrpc/internal/certs/certstest"
	"github.com/microgrpc/microgrpc/internal/etcdtest"
	"github.com/microgrpc/microgrpc/internal/natstest"
	"github.com/microgrpc/microgrpc/micro"
	"github.com/microgrpc/microgrpc/micro/pubsub"
	pb "github.com/microgrpc/microgrpc/proto/greeter"
	"github.com/microgrpc/microgrpc/resolver/memory"
)

// wrongHost is the refusal of a certificate for another host than the
// 127.0.0.1 dialled.
const wrongHost = "x509: certificate is valid for 192.0.2.1, not 127.0.0.1"

// etcd starts etcd with TLS, its certificate of p's CA for leaf.
func (p *pki) etcd(t *testing.T, leaf certstest.Leaf) *etcdtest.Server {
	t.Helper()
	f, err := p.ca.Write(p.dir, "etcd", leaf)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := etcdtest.StartTLS(etcdtest.TLSFiles(f))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	return srv
}

// nats starts a NATS server with TLS (client certificates of p's CA
// required), its certificate of p's CA for leaf, and returns its URL.
func (p *pki) nats(t *testing.T, leaf certstest.Leaf) string {
	t.Helper()
	f, err := p.ca.Write(p.dir, "nats", leaf)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := natstest.StartTLSFiles(f.Cert, f.Key, f.CA)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { natstest.Stop(srv) })
	return natstest.TLSURL(srv)
}

// With TLS on, a service's etcd (https://127.0.0.1) and NATS
// (tls://127.0.0.1) are verified against the IP dialled: servers whose
// certificates, of the service's CA, are for another name and another IP
// are refused, and the errors say so.
func TestTLSRegistryAndBrokerAreCheckedAgainstTheIP(t *testing.T) {
	p := newPKI(t, "ca")
	etcd := p.etcd(t, certstest.ForOtherHost("etcd.example"))
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

	pub := newClient(t, memory.NewRegistry(), withTLS(p.client),
		micro.WithBrokerPlugin("nats", p.nats(t, certstest.ForOtherHost("nats.example"))))
	if err := pubsub.NewPublisher("events", pub).Publish(testCtx(t), &pb.Event{Id: "x"}); err == nil || !strings.Contains(err.Error(), wrongHost) {
		t.Fatalf("NATS with a certificate for another host: %v, want an error with %q", err, wrongHost)
	}

	// The http broker dials subscriber nodes by address: a node of the CA
	// whose certificate is for another name and IP gets nothing.
	f, err := p.ca.Write(p.dir, "elsewhere", certstest.ForOtherHost("subscriber.example"))
	if err != nil {
		t.Fatal(err)
	}
	reg2 := memory.NewRegistry()
	handled := make(chan string, 1)
	startServiceWithSetup(t, reg2, "subscriber", func(svc *micro.Service) {
		if err := pubsub.RegisterSubscriber("events", svc, func(_ context.Context, e *pb.Event) error {
			handled <- e.GetId()
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}, withTLS(f))
	hpub := newClient(t, reg2, withTLS(p.client))
	if err := pubsub.NewPublisher("events", hpub).Publish(testCtx(t), &pb.Event{Id: "x"}); err == nil || !strings.Contains(err.Error(), wrongHost) {
		t.Fatalf("http broker, a subscriber with a certificate for another host: %v, want an error with %q", err, wrongHost)
	}
	select {
	case id := <-handled:
		t.Fatalf("the subscriber with the wrong certificate handled %q", id)
	default:
	}
}
