package http_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/microgrpc/microgrpc/broker"
	"github.com/microgrpc/microgrpc/broker/brokertest"
	httpbroker "github.com/microgrpc/microgrpc/broker/http"
	"github.com/microgrpc/microgrpc/internal/certs"
	"github.com/microgrpc/microgrpc/internal/certs/certstest"
	"github.com/microgrpc/microgrpc/resolver"
	"github.com/microgrpc/microgrpc/resolver/memory"
)

func pubCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// subscriberAddr returns the address the topic's subscriber registered.
func subscriberAddr(t *testing.T, reg resolver.Registry, topic string) string {
	t.Helper()
	svcs, err := reg.GetService(pubCtx(t), httpbroker.ServicePrefix+topic)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimPrefix(strings.TrimPrefix(svcs[0].Nodes[0].Address, "http://"), "https://")
}

// With a token, only publishers that present it deliver: one without it
// is refused with 401 and its message never reaches the handler.
func TestTokenRequired(t *testing.T) {
	reg := memory.NewRegistry()
	mk := func(token string) broker.Broker {
		return brokertest.New(t, func(*testing.T) broker.Broker {
			return httpbroker.NewBroker(httpbroker.WithRegistry(reg), httpbroker.WithAddress("127.0.0.1:0"),
				httpbroker.WithToken(token), httpbroker.WithLogger(quiet))
		})
	}
	sub, good, bad := mk("s3cret"), mk("s3cret"), mk("wrong")
	var handled atomic.Int32
	if _, err := sub.Subscribe("guarded", func(context.Context, broker.Event) error { handled.Add(1); return nil }); err != nil {
		t.Fatal(err)
	}
	if err := good.Publish(pubCtx(t), "guarded", &broker.Message{Body: []byte("ok")}); err != nil {
		t.Fatalf("publisher with the token: %v", err)
	}
	err := bad.Publish(pubCtx(t), "guarded", &broker.Message{Body: []byte("forged")})
	if !errors.Is(err, broker.ErrNotDelivered) || !strings.Contains(err.Error(), "401") {
		t.Fatalf("publisher with a wrong token: %v, want ErrNotDelivered saying 401", err)
	}
	// A plain HTTP client without the token gets 401 too.
	rsp, err := http.Get("http://" + subscriberAddr(t, reg, "guarded") + httpbroker.StreamPath)
	if err != nil {
		t.Fatal(err)
	}
	rsp.Body.Close()
	if rsp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("GET without the token: %s, want 401", rsp.Status)
	}
	if n := handled.Load(); n != 1 {
		t.Fatalf("handler ran %d times, want once (only the good publisher's message)", n)
	}
}

// With mutual TLS, a publisher without a client certificate signed by the
// CA cannot deliver; one with it can.
func TestMutualTLSRequired(t *testing.T) {
	ca, err := certstest.NewCA("broker-ca")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	f, err := ca.Write(dir, "node", certstest.ForHost("node"))
	if err != nil {
		t.Fatal(err)
	}
	withCert, err := certs.New(certs.Files{CertFile: f.Cert, KeyFile: f.Key, CAFile: f.CA}, nil)
	if err != nil {
		t.Fatal(err)
	}
	noCert, err := certs.New(certs.Files{CAFile: f.CA}, nil)
	if err != nil {
		t.Fatal(err)
	}
	reg := memory.NewRegistry()
	mk := func(src *certs.Source) broker.Broker {
		return brokertest.New(t, func(*testing.T) broker.Broker {
			return httpbroker.NewBroker(httpbroker.WithRegistry(reg), httpbroker.WithAddress("127.0.0.1:0"),
				httpbroker.WithTLS(withCert.ServerConfig(), src.ClientConfig()), httpbroker.WithLogger(quiet))
		})
	}
	sub, good, anon := mk(withCert), mk(withCert), mk(noCert)
	var handled atomic.Int32
	if _, err := sub.Subscribe("mtls", func(context.Context, broker.Event) error { handled.Add(1); return nil }); err != nil {
		t.Fatal(err)
	}
	if err := good.Publish(pubCtx(t), "mtls", &broker.Message{Body: []byte("ok")}); err != nil {
		t.Fatalf("publisher with a client certificate: %v", err)
	}
	if err := anon.Publish(pubCtx(t), "mtls", &broker.Message{Body: []byte("anon")}); !errors.Is(err, broker.ErrNotDelivered) {
		t.Fatalf("publisher without a client certificate: %v, want ErrNotDelivered", err)
	}
	if n := handled.Load(); n != 1 {
		t.Fatalf("handler ran %d times, want once", n)
	}
}

// A connection that sends its request too slowly is closed after the
// request timeout, so slow clients cannot hold the subscriber's sockets.
func TestSlowClientsAreDropped(t *testing.T) {
	reg := memory.NewRegistry()
	sub := brokertest.New(t, func(*testing.T) broker.Broker {
		return httpbroker.NewBroker(httpbroker.WithRegistry(reg), httpbroker.WithAddress("127.0.0.1:0"),
			httpbroker.WithRequestTimeout(300*time.Millisecond), httpbroker.WithLogger(quiet))
	})
	if _, err := sub.Subscribe("slow", func(context.Context, broker.Event) error { return nil }); err != nil {
		t.Fatal(err)
	}
	addr := subscriberAddr(t, reg, "slow")
	var conns []net.Conn
	for range 20 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n")) // and never the rest
		conns = append(conns, c)
	}
	for i, c := range conns {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 512)
		for {
			if _, err := c.Read(buf); err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					t.Fatalf("connection %d still open after 5 s", i)
				}
				break // closed by the subscriber
			}
		}
	}
}

// A subscription with too many deliveries waiting tells publishers it is
// busy instead of queueing without bound.
func TestBusySubscriberRefusesMore(t *testing.T) {
	reg := memory.NewRegistry()
	mk := func() broker.Broker {
		return brokertest.New(t, func(*testing.T) broker.Broker {
			return httpbroker.NewBroker(httpbroker.WithRegistry(reg), httpbroker.WithAddress("127.0.0.1:0"),
				httpbroker.WithMaxQueued(1), httpbroker.WithLogger(quiet))
		})
	}
	sub, pub := mk(), mk()
	release := make(chan struct{})
	defer close(release)
	if _, err := sub.Subscribe("busy", func(context.Context, broker.Event) error { <-release; return nil }, broker.MaxConcurrent(1)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(pubCtx(t))
	defer cancel()
	go pub.Publish(ctx, "busy", &broker.Message{Body: []byte("1")}) // handled, blocks
	go pub.Publish(ctx, "busy", &broker.Message{Body: []byte("2")}) // waits
	deadline := time.Now().Add(5 * time.Second)
	for {
		pctx, pcancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		err := pub.Publish(pctx, "busy", &broker.Message{Body: []byte("3")})
		pcancel()
		if err != nil && strings.Contains(err.Error(), "busy") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("third delivery: %v, want the subscriber busy", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// 100 MiB sent to the subscriber endpoint is refused without being held
// in memory.
func TestHugePostRefusedWithBoundedMemory(t *testing.T) {
	reg := memory.NewRegistry()
	sub := brokertest.New(t, func(*testing.T) broker.Broker {
		return httpbroker.NewBroker(httpbroker.WithRegistry(reg), httpbroker.WithAddress("127.0.0.1:0"), httpbroker.WithLogger(quiet))
	})
	if _, err := sub.Subscribe("huge", func(context.Context, broker.Event) error { return nil }); err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", subscriberAddr(t, reg, "huge"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	const size = 100 << 20
	if _, err := fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", httpbroker.StreamPath, size); err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 1<<20)
	sent := 0
	for sent < size {
		n, err := c.Write(chunk)
		sent += n
		if err != nil {
			break // the subscriber closed the connection: refused early
		}
	}
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	if grown := int64(after.HeapAlloc) - int64(before.HeapAlloc); grown > 32<<20 {
		t.Fatalf("the heap grew by %d MiB for a %d MiB POST", grown>>20, size>>20)
	}
	t.Logf("sent %d MiB before the subscriber closed the connection", sent>>20)
}
