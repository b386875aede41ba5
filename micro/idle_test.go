package micro_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/microgrpc/microgrpc/micro"
	pb "github.com/microgrpc/microgrpc/proto/greeter"
	"github.com/microgrpc/microgrpc/resolver/memory"
)

// idleClient is a raw HTTP/2 connection that opens gRPC streams and sends
// their headers but never a message: what a hostile or broken client can
// hold on a node for nothing.
type idleClient struct {
	conn net.Conn
	mu   sync.Mutex // serializes writes to fr
	fr   *http2.Framer
	next uint32 // the next stream id
	pong chan struct{}
	done chan struct{} // closed when the reader returned
}

// dialIdle connects to addr and keeps reading what the server sends
// (acknowledging its settings) until the test ends.
func dialIdle(t *testing.T, addr string) *idleClient {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c := &idleClient{conn: conn, fr: http2.NewFramer(conn, conn), next: 1,
		pong: make(chan struct{}, 1), done: make(chan struct{})}
	if _, err := conn.Write([]byte(http2.ClientPreface)); err != nil {
		t.Fatal(err)
	}
	if err := c.fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	go c.read()
	t.Cleanup(func() {
		conn.Close()
		<-c.done
	})
	return c
}

func (c *idleClient) read() {
	defer close(c.done)
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			return
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				c.mu.Lock()
				c.fr.WriteSettingsAck()
				c.mu.Unlock()
			}
		case *http2.PingFrame:
			if f.IsAck() {
				c.pong <- struct{}{}
			}
		}
	}
}

// open starts n streams on method with their headers and no message, then
// waits until the server has read them all: it answers a ping only after
// the frames sent before it.
func (c *idleClient) open(t *testing.T, method string, n int) {
	t.Helper()
	var block bytes.Buffer
	enc := hpack.NewEncoder(&block)
	c.mu.Lock()
	for range n {
		block.Reset()
		for _, f := range [][2]string{{":method", "POST"}, {":scheme", "http"}, {":path", method},
			{":authority", c.conn.RemoteAddr().String()}, {"content-type", "application/grpc"}, {"te", "trailers"}} {
			enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
		}
		if err := c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: c.next, BlockFragment: block.Bytes(), EndHeaders: true}); err != nil {
			c.mu.Unlock()
			t.Fatal(err)
		}
		c.next += 2
	}
	err := c.fr.WritePing(false, [8]byte{'i', 'd', 'l', 'e'})
	c.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-c.pong:
	case <-time.After(10 * time.Second):
		t.Fatal("the server did not answer a ping after the streams")
	}
}

// Streams that send their headers and never their request do not keep
// other clients waiting: with 8, 64 or 1,000 of them on one connection, or
// spread over 10, another client's health check answers within 100 ms,
// and so does its Hello once the streams kept the gate waiting for the
// gate's wait (DefaultRequestWait; before, 8 of them held the whole request memory
// budget and every other unary call waited until its deadline).
func TestIdleStreamsDoNotStallOthers(t *testing.T) {
	const within = 100 * time.Millisecond
	// A shorter wait than the default, to keep the test short.
	const wait = 250 * time.Millisecond
	defer micro.SetRequestWaitForTest(wait)()
	for _, conns := range []int{1, 10} {
		for _, n := range []int{8, 64, 1000} {
			t.Run(fmt.Sprintf("%d streams on %d connections", n, conns), func(t *testing.T) {
				srv := startService(t, memory.NewRegistry(), "greeter")
				cc := plainConn(t, srv.svc.Address())
				greeter, health := pb.NewGreeterClient(cc), healthpb.NewHealthClient(cc)
				// Connected before, so that what is timed is the call.
				if _, err := greeter.Hello(testCtx(t), &pb.Request{Name: "warm"}); err != nil {
					t.Fatal(err)
				}
				for i := range conns {
					share := n / conns
					if i < n%conns {
						share++
					}
					if share > 0 {
						dialIdle(t, srv.svc.Address()).open(t, "/greeter.Greeter/Hello", share)
					}
				}
				// Let the streams' calls reach the gate.
				time.Sleep(20 * time.Millisecond)
				// Streams just opened may keep others waiting for as long
				// as the gate lets a connection keep it waiting: once, and
				// again for a connection's next streams until two of its
				// reservations were taken back. After that, and for as
				// long as they stay idle, not at all.
				for round := range 4 {
					limit := within
					switch round {
					case 0:
						limit = 3*wait + within
					case 1:
						time.Sleep(3 * wait)
					}
					ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
					defer cancel()
					start := time.Now()
					_, err := greeter.Hello(ctx, &pb.Request{Name: "me"})
					hello := time.Since(start)
					if err != nil {
						t.Errorf("Hello with %d idle streams: %v", n, err)
					}
					start = time.Now()
					_, err = health.Check(ctx, &healthpb.HealthCheckRequest{Service: "greeter"})
					check := time.Since(start)
					if err != nil {
						t.Errorf("health check with %d idle streams: %v", n, err)
					}
					t.Logf("Hello %v, health check %v", hello, check)
					if hello > limit || check > within {
						t.Errorf("with %d idle streams on %d connections: Hello took %v (want within %v), health check %v (want within %v)",
							n, conns, hello, limit, check, within)
					}
				}
			})
		}
	}
}
