package direct_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/microgrpc/microgrpc/broker"
	"github.com/microgrpc/microgrpc/broker/brokertest"
	"github.com/microgrpc/microgrpc/broker/direct"
	"github.com/microgrpc/microgrpc/interceptors/auth"
	"github.com/microgrpc/microgrpc/internal/certs/certstest"
	"github.com/microgrpc/microgrpc/proto/delivery"
	"github.com/microgrpc/microgrpc/resolver"
	"github.com/microgrpc/microgrpc/resolver/memory"
)

// pki is a CA and what tests need of it.
type pki struct {
	t  *testing.T
	ca *certstest.CA
}

func newPKI(t *testing.T, name string) *pki {
	t.Helper()
	ca, err := certstest.NewCA(name)
	if err != nil {
		t.Fatal(err)
	}
	return &pki{t: t, ca: ca}
}

func (p *pki) pool() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(p.ca.Cert)
	return pool
}

// cert issues a certificate for 127.0.0.1 with the URIs given.
func (p *pki) cert(uris ...string) tls.Certificate {
	p.t.Helper()
	certPEM, keyPEM, err := p.ca.Issue(certstest.ForHost("node", uris...))
	if err != nil {
		p.t.Fatal(err)
	}
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		p.t.Fatal(err)
	}
	return c
}

// server returns a server config; mutual requires client certificates of
// this CA.
func (p *pki) server(mutual bool) *tls.Config {
	c := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{p.cert()}}
	if mutual {
		c.ClientCAs, c.ClientAuth = p.pool(), tls.RequireAndVerifyClientCert
	}
	return c
}

// client returns a client config trusting this CA, presenting own when
// given.
func (p *pki) client(own *tls.Certificate) *tls.Config {
	c := &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: p.pool()}
	if own != nil {
		c.Certificates = []tls.Certificate{*own}
	}
	return c
}

// fakeNode is a gRPC server that says OK to every delivery and counts the
// streams it saw, with their authorization metadata: what an attacker's
// registry record would point publishers at.
type fakeNode struct {
	delivery.UnimplementedDelivererServer
	streams atomic.Int64
	mu      sync.Mutex
	auth    []string
}

func (f *fakeNode) Deliver(stream grpc.BidiStreamingServer[delivery.Deliveries, delivery.Results]) error {
	f.streams.Add(1)
	md, _ := metadata.FromIncomingContext(stream.Context())
	f.mu.Lock()
	f.auth = append(f.auth, md.Get("authorization")...)
	f.mu.Unlock()
	for {
		in, err := stream.Recv()
		if err != nil {
			return nil
		}
		out := &delivery.Results{}
		for _, d := range in.GetDeliveries() {
			out.Results = append(out.Results, &delivery.Result{Id: d.GetId()})
		}
		if err := stream.Send(out); err != nil {
			return nil
		}
	}
}

// startFake serves a fakeNode in plaintext on 127.0.0.1 and registers it as
// a subscriber of topic in group.
func startFake(t *testing.T, reg resolver.Registry, topic, group string) *fakeNode {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeNode{}
	srv := grpc.NewServer()
	delivery.RegisterDelivererServer(srv, f)
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	rec := &resolver.Service{Name: direct.ServicePrefix + topic, Nodes: []resolver.Node{{
		ID: "fake-node", Address: lis.Addr().String(),
		// What the old broker trusted: a record saying "plaintext".
		Metadata: map[string]string{"topic": topic, "queue": group, "scheme": "http"},
	}}}
	if err := reg.Register(testCtx(t), rec); err != nil {
		t.Fatal(err)
	}
	return f
}

// A publisher with TLS never delivers to a node that does not speak TLS,
// whatever its registry record says: the Publish fails naming the node,
// and the node never sees a stream, let alone the token. (The old broker
// dialed the scheme the record named, sent the token in the clear, took
// the fake OK, and returned nil while the real group never saw it.)
func TestTLSPublisherNeverDowngrades(t *testing.T) {
	ca := newPKI(t, "ca")
	reg := memory.NewRegistry()
	fake := startFake(t, reg, "orders", "")
	pub := brokertest.New(t, func(*testing.T) broker.Broker {
		return direct.NewBroker(direct.WithRegistry(reg), direct.WithLogger(quiet), direct.WithToken("s3cret"),
			direct.WithTLS(nil, ca.client(nil), false))
	})
	err := pub.Publish(testCtx(t), "orders", &broker.Message{Body: []byte(`{"refund":"all"}`)})
	if !errors.Is(err, broker.ErrNotDelivered) || !strings.Contains(err.Error(), "fake-node") {
		t.Fatalf("Publish to a plaintext node = %v, want ErrNotDelivered naming fake-node", err)
	}
	if n := fake.streams.Load(); n != 0 {
		t.Fatalf("the plaintext node got %d streams (tokens %q)", n, fake.auth)
	}

	// Next to a real member of the group, the message goes to the real one.
	fakeInGroup := startFake(t, reg, "refunds", "billing")
	sub := brokertest.New(t, func(*testing.T) broker.Broker {
		return direct.NewBroker(direct.WithRegistry(reg), direct.WithAddress("127.0.0.1:0"), direct.WithLogger(quiet),
			direct.WithToken("s3cret"), direct.WithTLS(ca.server(false), ca.client(nil), false))
	})
	var handled atomic.Int64
	if _, err := sub.Subscribe("refunds", func(context.Context, broker.Event) error { handled.Add(1); return nil }, broker.Queue("billing")); err != nil {
		t.Fatal(err)
	}
	for range 20 {
		if err := pub.Publish(testCtx(t), "refunds", &broker.Message{Body: []byte("r")}); err != nil {
			t.Fatal(err)
		}
	}
	if handled.Load() != 20 || fakeInGroup.streams.Load() != 0 {
		t.Fatalf("real member handled %d of 20, the fake got %d streams", handled.Load(), fakeInGroup.streams.Load())
	}
}

// attacker opens Deliver streams to addr with creds (and a token when
// given), and sends one delivery.
func attack(t *testing.T, addr string, creds credentials.TransportCredentials, token string, d *delivery.Delivery) (*delivery.Result, error) {
	t.Helper()
	cc, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx := testCtx(t)
	if token != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
	}
	stream, err := delivery.NewDelivererClient(cc).Deliver(ctx)
	if err != nil {
		return nil, err
	}
	if err := stream.Send(&delivery.Deliveries{Deliveries: []*delivery.Delivery{d}}); err != nil {
		_, err = stream.Recv() // the status says why
		return nil, err
	}
	for {
		rs, err := stream.Recv()
		if err != nil {
			return nil, err
		}
		if len(rs.GetResults()) > 0 {
			return rs.GetResults()[0], nil
		}
	}
}

// subscribed returns the subscription's registry node.
func subscribed(t *testing.T, reg resolver.Registry, topic string) resolver.Node {
	t.Helper()
	svcs, err := reg.GetService(testCtx(t), direct.ServicePrefix+topic)
	if err != nil || len(svcs) == 0 || len(svcs[0].Nodes) == 0 {
		t.Fatalf("no subscriber of %q registered: %v %v", topic, svcs, err)
	}
	return svcs[0].Nodes[0]
}

// Forged deliveries in each security mode: none reaches a handler, and
// each gets a clear status code.
func TestForgedDeliveriesRefused(t *testing.T) {
	ca, other := newPKI(t, "ca"), newPKI(t, "other-ca")
	allowed, intruder := ca.cert("spiffe://example.org/billing"), ca.cert("spiffe://example.org/intruder")
	stranger := other.cert("spiffe://example.org/billing")
	type forgery struct {
		name     string
		creds    credentials.TransportCredentials
		token    string
		mangle   func(*delivery.Delivery)
		wantCode codes.Code // of the stream, or of the delivery's result
	}
	for _, mode := range []struct {
		name    string
		opts    []direct.Option
		sopts   []broker.SubscribeOption
		forged  []forgery
		goodPub []direct.Option
	}{
		{
			name: "no security",
			forged: []forgery{
				{"unknown subscription", insecure.NewCredentials(), "", func(d *delivery.Delivery) { d.Subscription = "guessed-1" }, codes.NotFound},
				{"another topic", insecure.NewCredentials(), "", func(d *delivery.Delivery) { d.Topic = "payments.other" }, codes.InvalidArgument},
			},
		},
		{
			name:  "token only",
			opts:  []direct.Option{direct.WithToken("s3cret"), direct.WithTLS(ca.server(false), ca.client(nil), false)},
			sopts: nil,
			forged: []forgery{
				{"plaintext", insecure.NewCredentials(), "", nil, codes.Unavailable},
				{"no token", credentials.NewTLS(ca.client(nil)), "", nil, codes.Unauthenticated},
				{"wrong token", credentials.NewTLS(ca.client(nil)), "guess", nil, codes.Unauthenticated},
			},
			goodPub: []direct.Option{direct.WithToken("s3cret"), direct.WithTLS(nil, ca.client(nil), false)},
		},
		{
			name:  "mutual TLS",
			opts:  []direct.Option{direct.WithTLS(ca.server(true), ca.client(&allowed), true)},
			sopts: []broker.SubscribeOption{broker.AllowPublishers("spiffe://example.org/billing")},
			forged: []forgery{
				{"no certificate", credentials.NewTLS(ca.client(nil)), "", nil, codes.Unavailable},
				{"another CA's certificate", credentials.NewTLS(ca.client(&stranger)), "", nil, codes.Unavailable},
				{"not allowed on the topic", credentials.NewTLS(ca.client(&intruder)), "", nil, codes.PermissionDenied},
			},
			goodPub: []direct.Option{direct.WithTLS(nil, ca.client(&allowed), true)},
		},
	} {
		t.Run(mode.name, func(t *testing.T) {
			reg := memory.NewRegistry()
			sub := brokertest.New(t, func(*testing.T) broker.Broker {
				return direct.NewBroker(append([]direct.Option{direct.WithRegistry(reg), direct.WithAddress("127.0.0.1:0"), direct.WithLogger(quiet)}, mode.opts...)...)
			})
			var handled atomic.Int64
			identity := make(chan string, 1)
			_, err := sub.Subscribe("payments", func(ctx context.Context, e broker.Event) error {
				handled.Add(1)
				id, _ := auth.PeerIdentity(ctx)
				select {
				case identity <- id:
				default:
				}
				return nil
			}, mode.sopts...)
			if err != nil {
				t.Fatal(err)
			}
			node := subscribed(t, reg, "payments")
			for _, f := range mode.forged {
				d := &delivery.Delivery{Id: 1, Subscription: node.ID, Topic: "payments", Body: []byte(`{"refund":"all"}`)}
				if f.mangle != nil {
					f.mangle(d)
				}
				res, err := attack(t, node.Address, f.creds, f.token, d)
				got := status.Code(err)
				if err == nil {
					got = codes.Code(res.GetCode())
				}
				if got != f.wantCode {
					t.Errorf("%s: got %v (%v), want %v", f.name, got, err, f.wantCode)
				}
			}
			if n := handled.Load(); n != 0 {
				t.Fatalf("%d forged deliveries were handled", n)
			}
			if mode.goodPub == nil {
				return
			}
			pub := brokertest.New(t, func(*testing.T) broker.Broker {
				return direct.NewBroker(append([]direct.Option{direct.WithRegistry(reg), direct.WithLogger(quiet)}, mode.goodPub...)...)
			})
			if err := pub.Publish(testCtx(t), "payments", &broker.Message{Body: []byte("real")}); err != nil || handled.Load() != 1 {
				t.Fatalf("the real publisher: %v, handled %d", err, handled.Load())
			}
			if mode.name == "mutual TLS" {
				if id := <-identity; id != "spiffe://example.org/billing" {
					t.Fatalf("handler saw publisher %q", id)
				}
			}
		})
	}
}

// A publisher that is not allowed on a topic hears it from Publish.
func TestPublisherNotAllowedOnTopicFails(t *testing.T) {
	ca := newPKI(t, "ca")
	billing, other := ca.cert("spiffe://example.org/billing"), ca.cert("spiffe://example.org/other")
	reg := memory.NewRegistry()
	sub := brokertest.New(t, func(*testing.T) broker.Broker {
		return direct.NewBroker(direct.WithRegistry(reg), direct.WithAddress("127.0.0.1:0"), direct.WithLogger(quiet),
			direct.WithTLS(ca.server(true), ca.client(&billing), true))
	})
	if _, err := sub.Subscribe("invoices", func(context.Context, broker.Event) error { return nil }, broker.AllowPublishers("spiffe://example.org/billing")); err != nil {
		t.Fatal(err)
	}
	pub := brokertest.New(t, func(*testing.T) broker.Broker {
		return direct.NewBroker(direct.WithRegistry(reg), direct.WithLogger(quiet), direct.WithTLS(nil, ca.client(&other), true))
	})
	err := pub.Publish(testCtx(t), "invoices", &broker.Message{Body: []byte("x")})
	if !errors.Is(err, broker.ErrNotDelivered) || !strings.Contains(err.Error(), "PermissionDenied") {
		t.Fatalf("Publish by a publisher not allowed = %v, want ErrNotDelivered with PermissionDenied", err)
	}
}

// Configurations that would leave deliveries open, or a token in the
// clear, are refused with errors that say what to set; development mode
// says once that it is unauthenticated.
func TestInsecureConfigurations(t *testing.T) {
	ca := newPKI(t, "ca")
	reg := memory.NewRegistry()
	tlsNoAuth := brokertest.New(t, func(*testing.T) broker.Broker {
		return direct.NewBroker(direct.WithRegistry(reg), direct.WithAddress("127.0.0.1:0"), direct.WithLogger(quiet),
			direct.WithTLS(ca.server(false), ca.client(nil), false))
	})
	_, err := tlsNoAuth.Subscribe("t", func(context.Context, broker.Event) error { return nil })
	if !errors.Is(err, direct.ErrUnauthenticated) || !strings.Contains(err.Error(), "set --tls_ca_file or --broker_token") {
		t.Fatalf("TLS without CA or token: Subscribe = %v", err)
	}

	plainToken := direct.NewBroker(direct.WithRegistry(reg), direct.WithLogger(quiet), direct.WithToken("s3cret"))
	defer plainToken.Disconnect(testCtx(t))
	if err := plainToken.Connect(testCtx(t)); !errors.Is(err, direct.ErrPlaintextToken) {
		t.Fatalf("token without TLS: Connect = %v", err)
	}

	// With the explicit insecure option the token works without TLS.
	mk := func(*testing.T) broker.Broker {
		return direct.NewBroker(direct.WithRegistry(reg), direct.WithAddress("127.0.0.1:0"), direct.WithLogger(quiet),
			direct.WithToken("s3cret"), direct.WithInsecureToken())
	}
	sub, pub := brokertest.New(t, mk), brokertest.New(t, mk)
	if _, err := sub.Subscribe("dev", func(context.Context, broker.Event) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish(testCtx(t), "dev", &broker.Message{Body: []byte("x")}); err != nil {
		t.Fatalf("token over plaintext, allowed: %v", err)
	}

	var logs bytes.Buffer
	var mu sync.Mutex
	logger := slog.New(slog.NewTextHandler(lockedWriter{&mu, &logs}, nil))
	dev := brokertest.New(t, func(*testing.T) broker.Broker {
		return direct.NewBroker(direct.WithRegistry(reg), direct.WithAddress("127.0.0.1:0"), direct.WithLogger(logger))
	})
	for _, topic := range []string{"a", "b"} {
		if _, err := dev.Subscribe(topic, func(context.Context, broker.Event) error { return nil }); err != nil {
			t.Fatal(err)
		}
	}
	mu.Lock()
	out := logs.String()
	mu.Unlock()
	if n := strings.Count(out, "deliveries are unauthenticated"); n != 1 {
		t.Fatalf("development mode warned %d times, want once:\n%s", n, out)
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
