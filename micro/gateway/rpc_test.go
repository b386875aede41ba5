package gateway_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/microgrpc/microgrpc/micro"
	"github.com/microgrpc/microgrpc/micro/gateway"
	pb "github.com/microgrpc/microgrpc/proto/greeter"
	"github.com/microgrpc/microgrpc/resolver/memory"
)

// The greeter's google.api.http routes, under its registry name.
func TestREST(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct{ method, path, body string }{
		{http.MethodGet, "/greeter/v1/hello/John", ""},
		{http.MethodPost, "/greeter/v1/hello", `{"name":"John"}`},
	} {
		req, _ := http.NewRequestWithContext(testCtx(t), tc.method, e.srv.URL+tc.path, strings.NewReader(tc.body))
		req.Header.Set("Content-Type", "application/json")
		rsp, body := do(t, req)
		var g greeting
		if rsp.StatusCode != 200 || json.Unmarshal([]byte(body), &g) != nil || g.Msg != "Hello John" || g.Node == "" {
			t.Fatalf("%s %s: %s %s", tc.method, tc.path, rsp.Status, body)
		}
		if rsp.Header.Get(gateway.NodeHeader) != g.Node {
			t.Fatalf("%s %s: header names node %q, %q answered", tc.method, tc.path, rsp.Header.Get(gateway.NodeHeader), g.Node)
		}
	}
	rsp, body := do(t, mustRequest(t, http.MethodGet, e.srv.URL+"/greeter/v1/nosuch", ""))
	if rsp.StatusCode != http.StatusNotFound {
		t.Fatalf("GET an unannotated route: %s %s", rsp.Status, body)
	}
}

func mustRequest(t *testing.T, method, url, body string) *http.Request {
	t.Helper()
	req, err := http.NewRequestWithContext(testCtx(t), method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// Connect and gRPC-Web clients (connect-go's own, the protocols a browser
// speaks) call every kind of method; a gRPC client calls over HTTP/2.
func TestConnectGRPCWebAndGRPC(t *testing.T) {
	e := newEnv(t)
	tlsSrv := serveTLS(t, e.gw)
	base := tlsSrv.URL + "/greeter/greeter.Greeter/"
	hc := tlsSrv.Client() // HTTP/2 over TLS: bidi streams need it
	for _, proto := range []struct {
		name string
		opts []connect.ClientOption
	}{
		{"connect+json", []connect.ClientOption{connect.WithProtoJSON()}},
		{"connect+proto", nil},
		{"grpc-web", []connect.ClientOption{connect.WithGRPCWeb()}},
	} {
		t.Run(proto.name, func(t *testing.T) {
			ctx := testCtx(t)
			hello := connect.NewClient[pb.Request, pb.Response](hc, base+"Hello", proto.opts...)
			rsp, err := hello.CallUnary(ctx, connect.NewRequest(&pb.Request{Name: "John"}))
			if err != nil || rsp.Msg.GetMsg() != "Hello John" {
				t.Fatalf("Hello: %v %v", rsp, err)
			}
			if got := rsp.Header().Get(gateway.NodeHeader); got != rsp.Msg.GetNode() {
				t.Fatalf("Hello: header names node %q, %q answered", got, rsp.Msg.GetNode())
			}

			stream := connect.NewClient[pb.Request, pb.Response](hc, base+"HelloStream", proto.opts...)
			ss, err := stream.CallServerStream(ctx, connect.NewRequest(&pb.Request{Name: "John", Count: 3}))
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			for ss.Receive() {
				n++
			}
			if ss.Err() != nil || n != 3 {
				t.Fatalf("HelloStream: %d messages, %v", n, ss.Err())
			}
			ss.Close()

			many := connect.NewClient[pb.Request, pb.Response](hc, base+"HelloMany", proto.opts...)
			cs := many.CallClientStream(ctx)
			for _, name := range []string{"a", "b"} {
				if err := cs.Send(&pb.Request{Name: name}); err != nil {
					t.Fatal(err)
				}
			}
			if rsp, err := cs.CloseAndReceive(); err != nil || rsp.Msg.GetMsg() != "Hello a, b" {
				t.Fatalf("HelloMany: %v %v", rsp, err)
			}

			chat := connect.NewClient[pb.Request, pb.Response](hc, base+"Chat", proto.opts...)
			bidi := chat.CallBidiStream(ctx)
			for _, name := range []string{"a", "b"} {
				if err := bidi.Send(&pb.Request{Name: name}); err != nil {
					t.Fatal(err)
				}
				if rsp, err := bidi.Receive(); err != nil || rsp.GetMsg() != "Hello "+name {
					t.Fatalf("Chat: %v %v", rsp, err)
				}
			}
			_ = bidi.CloseRequest()
			if _, err := bidi.Receive(); !errors.Is(err, io.EOF) {
				t.Fatalf("Chat after close: %v, want EOF", err)
			}
			_ = bidi.CloseResponse()

			bye := connect.NewClient[pb.Request, pb.Response](hc, base+"Bye", proto.opts...)
			if _, err := bye.CallUnary(ctx, connect.NewRequest(&pb.Request{})); connect.CodeOf(err) != connect.CodeNotFound && connect.CodeOf(err) != connect.CodeUnimplemented {
				t.Fatalf("an unknown method: %v", err)
			}
		})
	}

	// gRPC itself, over HTTP/2 with TLS, at the service's prefix.
	pool := x509.NewCertPool()
	pool.AddCert(tlsSrv.Certificate())
	host := strings.TrimPrefix(tlsSrv.URL, "https://")
	cc, err := grpc.NewClient("passthrough:///"+host, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool, ServerName: "example.com"})),
		grpc.WithUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			return invoker(ctx, "/greeter"+method, req, reply, cc, opts...)
		}))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	rsp, err := pb.NewGreeterClient(cc).Hello(testCtx(t), &pb.Request{Name: "John"})
	if err != nil || rsp.GetMsg() != "Hello John" {
		t.Fatalf("gRPC through the gateway: %v %v", rsp, err)
	}
}

// The Connect protocol's errors: a service unknown, invalid JSON, a
// service without reflection.
func TestConnectErrors(t *testing.T) {
	e := newEnv(t)
	startNode(t, e.reg, "bare", nil, micro.WithReflection(false))
	rsp, body := post(t, e.srv.URL+"/bare/greeter.Greeter/Hello", "application/json", `{}`, "Connect-Protocol-Version", "1")
	if rsp.StatusCode != http.StatusNotImplemented || !strings.Contains(body, `service \"bare\"`) {
		t.Fatalf("a service without reflection: %s %s", rsp.Status, body)
	}
	rsp, body = post(t, e.srv.URL+"/nosuch/greeter.Greeter/Hello", "application/json", `{}`, "Connect-Protocol-Version", "1")
	if rsp.StatusCode != http.StatusNotFound || !strings.Contains(body, `"not_found"`) {
		t.Fatalf("unknown service: %s %s", rsp.Status, body)
	}
	rsp, body = post(t, e.srv.URL+"/greeter/greeter.Greeter/Hello", "application/json", `{"name":`, "Connect-Protocol-Version", "1")
	if rsp.StatusCode != http.StatusBadRequest {
		t.Fatalf("invalid JSON: %s %s", rsp.Status, body)
	}
}

// A Connect call's deadline and metadata.
func TestConnectDeadlineAndMetadata(t *testing.T) {
	reg := memory.NewRegistry()
	startNode(t, reg, "greeter", hook)
	_, srv := startGateway(t, reg)

	rsp, body := post(t, srv.URL+"/greeter/greeter.Greeter/Hello", "application/json", `{"name":"slow"}`, "Connect-Protocol-Version", "1", "Connect-Timeout-Ms", "100")
	if rsp.StatusCode != http.StatusGatewayTimeout || !strings.Contains(body, "deadline_exceeded") {
		t.Fatalf("Connect deadline: %s %s", rsp.Status, body)
	}
	rsp, body = post(t, srv.URL+"/greeter/greeter.Greeter/Hello", "application/json", `{"name":"md"}`, "Connect-Protocol-Version", "1", "Authorization", "Bearer x", "Cookie", "c=1")
	if rsp.StatusCode != http.StatusBadRequest || !strings.Contains(body, `authorization=[\"Bearer x\"] cookie=[]`) {
		t.Fatalf("Connect metadata: %s %s", rsp.Status, body)
	}
}
