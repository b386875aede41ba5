package main

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/xds"

	"github.com/microgrpc/microgrpc/internal/certs"
	"github.com/microgrpc/microgrpc/internal/certs/certstest"
	"github.com/microgrpc/microgrpc/internal/etcdtest"
	"github.com/microgrpc/microgrpc/internal/exampletest"
	pb "github.com/microgrpc/microgrpc/proto/greeter"
)

// micro xds serves an etcd registry to grpc-go's xDS client, which finds
// both nodes through the file micro xds bootstrap prints; with the three
// TLS settings it serves mutual TLS, and a client without a certificate
// is refused.
func TestXDS(t *testing.T) {
	etcd, err := etcdtest.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(etcd.Close)
	env := []string{"MICRO_REGISTRY=etcd", "MICRO_REGISTRY_ADDRESS=" + etcd.Endpoint()}
	c := &cli{t: t, bin: exampletest.Build(t, "github.com/microgrpc/microgrpc/cmd/micro"), env: env}
	startNode(t, "n1", env)
	startNode(t, "n2", env)

	t.Run("plaintext", func(t *testing.T) {
		c.t = t
		addr := freeAddr(t)
		cp := c.start("xds", "--address", addr)
		cp.WaitFor("xDS control plane of the etcd registry at " + etcd.Endpoint() + " on " + addr + " (plaintext")
		callAll(t, []byte(c.ok("", "xds", "bootstrap", "--address", addr)), "n1", "n2")
		if err := cp.Stop(); err != nil {
			t.Errorf("micro xds after SIGINT: %v\n%s", err, cp.Output())
		}
	})

	t.Run("mutual TLS", func(t *testing.T) {
		c.t = t
		dir := t.TempDir()
		ca, err := certstest.NewCA("xds-ca")
		if err != nil {
			t.Fatal(err)
		}
		server, err := ca.Write(dir, "xds", certstest.ForHost("localhost"))
		if err != nil {
			t.Fatal(err)
		}
		client, err := ca.Write(dir, "client", certstest.ForHost("client"))
		if err != nil {
			t.Fatal(err)
		}
		addr := freeAddr(t)
		cp := c.start("xds", "--address", addr, "--tls_cert_file", server.Cert, "--tls_key_file", server.Key, "--tls_ca_file", server.CA)
		cp.WaitFor("(mutual TLS")
		bootstrap := c.ok("", "xds", "bootstrap", "--address", addr, "--tls_cert_file", client.Cert, "--tls_key_file", client.Key, "--tls_ca_file", client.CA)
		if !strings.Contains(bootstrap, `"type": "tls"`) || !strings.Contains(bootstrap, client.Cert) {
			t.Fatalf("micro xds bootstrap with TLS files printed:\n%s", bootstrap)
		}
		callAll(t, []byte(bootstrap), "n1", "n2")

		// Without a client certificate, and in plaintext: refused.
		noCert, err := certs.New(certs.Files{CAFile: client.CA}, nil)
		if err != nil {
			t.Fatal(err)
		}
		for name, creds := range map[string]credentials.TransportCredentials{
			"TLS without a client certificate": credentials.NewTLS(noCert.ClientConfig("h2")),
			"plaintext":                        insecure.NewCredentials(),
		} {
			if err := adsRequest(t, addr, creds); status.Code(err) != codes.Unavailable {
				t.Errorf("%s: ADS request: %v, want UNAVAILABLE", name, err)
			}
		}
		if err := cp.Stop(); err != nil {
			t.Errorf("micro xds after SIGINT: %v\n%s", err, cp.Output())
		}
	})

	t.Run("usage", func(t *testing.T) {
		c.t = t
		c.fails(exitUsage, []string{"unknown argument \"boot\""}, "xds", "boot")
		c.fails(exitUsage, []string{"-version_weights", "want SERVICE=VERSION:WEIGHT"}, "xds", "--version_weights", "greeter")
		c.fails(exitFail, []string{"certificate file needs its key file"}, "xds", "bootstrap", "--tls_cert_file", "x.crt")
	})
}

// freeAddr is a free loopback address.
func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// callAll calls the greeter through xds:///greeter with bootstrap until
// every node in want answered.
func callAll(t *testing.T, bootstrap []byte, want ...string) {
	t.Helper()
	b, err := xds.NewXDSResolverWithConfigForTesting(bootstrap)
	if err != nil {
		t.Fatalf("bootstrap %s: %v", bootstrap, err)
	}
	conn, err := grpc.NewClient("xds:///greeter", grpc.WithResolvers(b), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := pb.NewGreeterClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	seen := map[string]bool{}
	for calls := 0; calls < 100 && len(seen) < len(want); calls++ {
		rsp, err := client.Hello(ctx, &pb.Request{Name: "xds"})
		if err != nil {
			t.Fatalf("call %d through xds:///greeter: %v", calls, err)
		}
		seen[rsp.GetNode()] = true
	}
	for _, id := range want {
		if !seen[id] {
			t.Errorf("node %s got none of the calls through xds:///greeter; answers from %v", id, seen)
		}
	}
}

// adsRequest asks the control plane at addr for the greeter's listener.
func adsRequest(t *testing.T, addr string, creds credentials.TransportCredentials) error {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, err := discovery.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		return err
	}
	if err := stream.Send(&discovery.DiscoveryRequest{TypeUrl: resource.ListenerType, ResourceNames: []string{"greeter"}}); err != nil {
		_, err = stream.Recv()
		return err
	}
	_, err = stream.Recv()
	return err
}
