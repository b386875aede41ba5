package micro_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/microgrpc/microgrpc/broker"
	memorybroker "github.com/microgrpc/microgrpc/broker/memory"
	"github.com/microgrpc/microgrpc/interceptors/auth"
	"github.com/microgrpc/microgrpc/internal/certs"
	"github.com/microgrpc/microgrpc/internal/certs/certstest"
	"github.com/microgrpc/microgrpc/internal/greetertest"
	"github.com/microgrpc/microgrpc/micro"
	"github.com/microgrpc/microgrpc/micro/pubsub"
	pb "github.com/microgrpc/microgrpc/proto/greeter"
	"github.com/microgrpc/microgrpc/resolver"
	"github.com/microgrpc/microgrpc/resolver/memory"
)

// pki is a CA and the certificate files of a server and a client.
type pki struct {
	ca             *certstest.CA
	dir            string
	server, client certstest.Files
}

func newPKI(t *testing.T, name string) *pki {
	t.Helper()
	ca, err := certstest.NewCA(name)
	if err != nil {
		t.Fatal(err)
	}
	p := &pki{ca: ca, dir: t.TempDir()}
	if p.server, err = ca.Write(p.dir, "server", certstest.ForHost("greeter", "spiffe://test/greeter")); err != nil {
		t.Fatal(err)
	}
	if p.client, err = ca.Write(p.dir, "client", certstest.ForHost("client", "spiffe://test/client")); err != nil {
		t.Fatal(err)
	}
	return p
}

func withTLS(f certstest.Files) micro.Option { return micro.WithTLS(f.Cert, f.Key, f.CA) }

// With TLS on, a client of the same CA calls through Dial (mutual TLS),
// and the handler learns the caller's identity.
func TestTLSDialAndIdentity(t *testing.T) {
	p := newPKI(t, "ca")
	reg := memory.NewRegistry()
	seen := make(chan string, 1)
	startServiceHook(t, reg, "greeter", func(ctx context.Context, _ *pb.Request) error {
		id, _ := auth.PeerIdentity(ctx)
		select {
		case seen <- id:
		default:
		}
		return nil
	}, withTLS(p.server))
	c := newClient(t, reg, withTLS(p.client))
	var pr peer.Peer
	if _, err := pb.NewGreeterClient(c.Dial("greeter")).Hello(testCtx(t), &pb.Request{}, grpc.WaitForReady(true), grpc.Peer(&pr)); err != nil {
		t.Fatal(err)
	}
	if id := <-seen; id != "spiffe://test/client" {
		t.Fatalf("handler saw caller %q, want the client's SPIFFE id", id)
	}
	if info, ok := pr.AuthInfo.(credentials.TLSInfo); !ok || info.State.PeerCertificates[0].URIs[0].String() != "spiffe://test/greeter" {
		t.Fatalf("the client's peer is %v, want the server's certificate", pr.AuthInfo)
	}
}

// callErr makes one fail-fast call (retried by the balancer) and returns
// its error.
func callErr(t *testing.T, c pb.GreeterClient) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var err error
	for ctx.Err() == nil { // until the first connection attempt has failed
		if _, err = c.Hello(ctx, &pb.Request{}); status.Code(err) != codes.DeadlineExceeded {
			return err
		}
	}
	return err
}

// Mismatches fail clearly: a server of another CA is not trusted, a
// client without a certificate is refused, and plaintext and TLS do not
// mix either way.
func TestTLSMismatchesFailClearly(t *testing.T) {
	p, other := newPKI(t, "ca"), newPKI(t, "other-ca")
	reg := memory.NewRegistry()
	startService(t, reg, "greeter", withTLS(p.server))
	plainReg := memory.NewRegistry()
	startService(t, plainReg, "greeter")
	for _, c := range []struct {
		name string
		reg  resolver.Registry
		opts []micro.Option
		want string
	}{
		{"client trusts another CA", reg, []micro.Option{withTLS(other.client)}, "certificate signed by unknown authority"},
		// TLS 1.3 tells the client only after its side of the handshake:
		// "certificate required" or a broken connection, depending on timing.
		{"client has no certificate", reg, []micro.Option{micro.WithTLS("", "", p.client.CA)}, ""},
		{"plaintext client, TLS server", reg, nil, "the server may require TLS"},
		{"TLS client, plaintext server", plainReg, []micro.Option{withTLS(p.client)}, "first record does not look like a TLS handshake"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cl := newClient(t, c.reg, c.opts...)
			err := callErr(t, pb.NewGreeterClient(cl.Dial("greeter")))
			if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("call = %v, want Unavailable saying %q", err, c.want)
			}
		})
	}
}

// The auth interceptor allows and denies by the caller's identity.
func TestIdentityAllowList(t *testing.T) {
	p := newPKI(t, "ca")
	reg := memory.NewRegistry()
	rules := auth.Allow{"/greeter.Greeter/Hello": {"spiffe://test/client"}, "/greeter.Greeter/*": {"spiffe://test/admin"}}
	startService(t, reg, "greeter", withTLS(p.server),
		micro.WithUnaryServerInterceptors(auth.UnaryIdentityInterceptor(rules)),
		micro.WithStreamServerInterceptors(auth.StreamIdentityInterceptor(rules)))
	g := pb.NewGreeterClient(newClient(t, reg, withTLS(p.client)).Dial("greeter"))
	if _, err := g.Hello(testCtx(t), &pb.Request{}, grpc.WaitForReady(true)); err != nil {
		t.Fatalf("allowed call: %v", err)
	}
	s, err := g.HelloStream(testCtx(t), &pb.Request{Count: 1})
	if err == nil {
		_, err = s.Recv()
	}
	if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "spiffe://test/client may not call /greeter.Greeter/HelloStream") {
		t.Fatalf("denied stream: %v, want PermissionDenied naming the caller and method", err)
	}
}

// Replacing the certificate files is picked up without a restart: new
// connections get the new server certificate.
func TestTLSRotationWithoutRestart(t *testing.T) {
	old := certs.CheckInterval
	certs.CheckInterval = 0
	t.Cleanup(func() { certs.CheckInterval = old })
	p := newPKI(t, "ca")
	reg := memory.NewRegistry()
	startService(t, reg, "greeter", withTLS(p.server))
	serverURI := func() string {
		// A fresh client each time: a fresh handshake.
		c := newClient(t, reg, withTLS(p.client))
		var pr peer.Peer
		if _, err := pb.NewGreeterClient(c.Dial("greeter")).Hello(testCtx(t), &pb.Request{}, grpc.WaitForReady(true), grpc.Peer(&pr)); err != nil {
			t.Fatal(err)
		}
		c.Close()
		return pr.AuthInfo.(credentials.TLSInfo).State.PeerCertificates[0].URIs[0].String()
	}
	if got := serverURI(); got != "spiffe://test/greeter" {
		t.Fatalf("before rotation the server is %s", got)
	}
	time.Sleep(20 * time.Millisecond) // a newer modification time
	if _, err := p.ca.Write(p.dir, "server", certstest.ForHost("greeter", "spiffe://test/greeter-rotated")); err != nil {
		t.Fatal(err)
	}
	if got := serverURI(); got != "spiffe://test/greeter-rotated" {
		t.Fatalf("after rotation the server is %s, want the new certificate", got)
	}
}

// Bad TLS files fail Run and Conn with the file's name.
func TestTLSBadFiles(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nope.crt")
	svc := micro.NewService(micro.WithName("greeter"), micro.WithRegistry(memory.NewRegistry()), micro.WithTLS(missing, missing, ""))
	defer svc.Close()
	if _, err := svc.Conn("greeter"); err == nil || !strings.Contains(err.Error(), "nope.crt") {
		t.Fatalf("Conn with missing TLS files = %v", err)
	}
	if err := svc.Run(); err == nil || !strings.Contains(err.Error(), "nope.crt") {
		t.Fatalf("Run with missing TLS files = %v", err)
	}
	if _, err := os.Stat(missing); !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
}

// With TLS on, the http broker delivers over mutual TLS: a publisher with
// the service's certificate delivers, one with only the CA cannot.
func TestTLSPubSub(t *testing.T) {
	p := newPKI(t, "ca")
	reg := memory.NewRegistry()
	got := make(chan string, 10)
	startServiceWithSetup(t, reg, "subscriber", func(svc *micro.Service) {
		if err := pubsub.RegisterSubscriber("secure-events", svc, func(_ context.Context, e *pb.Event) error {
			got <- e.GetId()
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}, withTLS(p.server))
	pub := newClient(t, reg, withTLS(p.client))
	deadline := time.Now().Add(defaultTestTimeout)
	for {
		err := pubsub.NewPublisher("secure-events", pub).Publish(testCtx(t), &pb.Event{Id: "1"})
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("publish over mutual TLS: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if id := <-got; id != "1" {
		t.Fatalf("got %q", id)
	}
	anon := newClient(t, reg, micro.WithTLS("", "", p.client.CA))
	if err := pubsub.NewPublisher("secure-events", anon).Publish(testCtx(t), &pb.Event{Id: "forged"}); err == nil {
		t.Fatal("a publisher without a client certificate delivered")
	}
	select {
	case id := <-got:
		t.Fatalf("the handler got %q from a publisher without a certificate", id)
	default:
	}
}

// With mutual TLS a subscription can admit only some publishers: the
// allowed one delivers and its handler knows who it is; another service of
// the same CA is refused with PermissionDenied and its message never
// reaches the handler. A broker that cannot tell publishers apart refuses
// such a subscription, so the service does not start.
func TestTLSPubSubAllowedPublishers(t *testing.T) {
	p := newPKI(t, "ca")
	reg := memory.NewRegistry()
	got := make(chan string, 10)
	startServiceWithSetup(t, reg, "ledger", func(svc *micro.Service) {
		if err := pubsub.RegisterSubscriber("entries", svc, func(ctx context.Context, e *pb.Event) error {
			id, _ := auth.PeerIdentity(ctx)
			got <- e.GetId() + " from " + id
			return nil
		}, pubsub.WithAllowedPublishers("spiffe://test/client")); err != nil {
			t.Fatal(err)
		}
	}, withTLS(p.server))
	allowed := newClient(t, reg, withTLS(p.client))
	if err := pubsub.NewPublisher("entries", allowed).Publish(testCtx(t), &pb.Event{Id: "1"}); err != nil {
		t.Fatalf("the allowed publisher: %v", err)
	}
	if g := <-got; g != "1 from spiffe://test/client" {
		t.Fatalf("handler saw %q", g)
	}
	other := newClient(t, reg, withTLS(p.server)) // spiffe://test/greeter
	err := pubsub.NewPublisher("entries", other).Publish(testCtx(t), &pb.Event{Id: "2"})
	if !errors.Is(err, broker.ErrNotDelivered) || !strings.Contains(err.Error(), "PermissionDenied") {
		t.Fatalf("a publisher not allowed: %v, want ErrNotDelivered with PermissionDenied", err)
	}
	select {
	case g := <-got:
		t.Fatalf("the handler got %q from a publisher not allowed", g)
	default:
	}

	svc := micro.NewService(micro.WithName("open"), micro.WithAddress("127.0.0.1:0"), micro.WithRegistry(memory.NewRegistry()),
		micro.WithBroker(memorybroker.NewBroker()), micro.WithSignal(false), micro.WithLogger(quietLogger))
	if err := pubsub.RegisterSubscriber("entries", svc, func(context.Context, *pb.Event) error { return nil },
		pubsub.WithAllowedPublishers("spiffe://test/client")); err != nil {
		t.Fatal(err)
	}
	if err := svc.Run(); !errors.Is(err, broker.ErrPublisherIdentity) {
		t.Fatalf("Run with AllowedPublishers on the memory broker = %v, want ErrPublisherIdentity", err)
	}
}

// With TLS on, the service talks TLS to etcd too (https://, verified with
// the service's CA, its certificate shown): registration and Dial work
// end to end over TLS.
func TestTLSWithEtcd(t *testing.T) {
	p := newPKI(t, "ca")
	srv := p.etcd(t, certstest.ForHost("etcd"))
	plugin := micro.WithRegistryPlugin("etcd", "https://"+srv.Endpoint())
	node := startDefault(t, plugin, withTLS(p.server))
	client := micro.NewService(micro.WithName("client"), micro.WithLogger(quietLogger), plugin, withTLS(p.client))
	defer client.Close()
	callAll(t, client, map[string]bool{node.ID(): true})
}

// With TLS on and a tls:// NATS URL, the NATS broker verifies the server
// with the service's CA and shows the service's certificate: messages go
// through a NATS server that requires client certificates.
func TestTLSWithNATS(t *testing.T) {
	p := newPKI(t, "ca")
	brokerOpt := micro.WithBrokerPlugin("nats", p.nats(t, certstest.ForHost("nats")))
	reg := memory.NewRegistry()
	got := make(chan string, 10)
	startServiceWithSetup(t, reg, "subscriber", func(svc *micro.Service) {
		if err := pubsub.RegisterSubscriber("nats-tls", svc, func(_ context.Context, e *pb.Event) error {
			got <- e.GetId()
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}, withTLS(p.server), brokerOpt)
	pub := newClient(t, reg, withTLS(p.client), brokerOpt)
	if err := pubsub.NewPublisher("nats-tls", pub).Publish(testCtx(t), &pb.Event{Id: "over-tls"}); err != nil {
		t.Fatal(err)
	}
	select {
	case id := <-got:
		if id != "over-tls" {
			t.Fatalf("got %q", id)
		}
	case <-time.After(defaultTestTimeout):
		t.Fatal("the message did not arrive over TLS")
	}
	// Without a certificate the NATS server refuses the connection.
	anon := newClient(t, reg, micro.WithTLS("", "", p.client.CA), brokerOpt)
	if err := pubsub.NewPublisher("nats-tls", anon).Publish(testCtx(t), &pb.Event{Id: "anon"}); err == nil {
		t.Fatal("a publisher without a client certificate reached the NATS server")
	}
}

// A service that would serve with only a CA file, no certificate of its
// own, is refused at Run with an error naming the flags, and registers
// nothing (before, it registered, said "service started", and failed
// every handshake); a service that only calls others needs no more than
// the CA.
func TestTLSServingNeedsACertificate(t *testing.T) {
	p := newPKI(t, "serving-ca")
	reg := memory.NewRegistry()
	// A server that asks for no client certificate (no CA file of its own).
	startService(t, reg, "greeter", micro.WithTLS(p.server.Cert, p.server.Key, ""))

	ctx, cancel := context.WithTimeout(context.Background(), defaultTestTimeout)
	defer cancel()
	caOnly := micro.NewService(micro.WithName("greeter"), micro.WithRegistry(reg), micro.WithContext(ctx),
		micro.WithAddress("127.0.0.1:0"), micro.WithTLS("", "", p.server.CA), micro.WithLogger(quietLogger))
	defer caOnly.Close()
	pb.RegisterGreeterServer(caOnly.Server(), &greetertest.Server{Node: caOnly.ID()})
	ran := make(chan error, 1)
	go func() { ran <- caOnly.Run() }()
	var err error
	select {
	case err = <-ran:
	case <-time.After(2 * time.Second):
		cancel()
		<-ran
		t.Fatal("a service with only a CA file ran")
	}
	if err == nil || !strings.Contains(err.Error(), "--tls_cert_file") || !strings.Contains(err.Error(), "--tls_key_file") {
		t.Fatalf("Run with only a CA file = %v, want an error naming --tls_cert_file and --tls_key_file", err)
	}
	nodes, err := reg.GetService(testCtx(t), "greeter")
	if err != nil {
		t.Fatal(err)
	}
	if n := len(nodes); n != 1 || len(nodes[0].Nodes) != 1 {
		t.Fatalf("registered after the refused Run: %+v, want the one TLS server", nodes)
	}

	client := micro.NewService(micro.WithName("client"), micro.WithRegistry(reg), micro.WithTLS("", "", p.server.CA))
	defer client.Close()
	cc, err := client.Conn("greeter")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pb.NewGreeterClient(cc).Hello(testCtx(t), &pb.Request{Name: "ca only"}); err != nil {
		t.Fatalf("a client with only the CA: %v", err)
	}
}
