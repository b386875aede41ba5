package gateway_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/microgrpc/microgrpc/micro"
	"github.com/microgrpc/microgrpc/micro/gateway"
	"github.com/microgrpc/microgrpc/resolver/memory"
)

type greeting struct {
	Msg  string `json:"msg"`
	Node string `json:"node"`
}

// Both forms of the method name reach both nodes, and the answer names the
// node that served it, in the body (the greeter's own field) and in the
// gateway's header, which must agree.
func TestJSONByName(t *testing.T) {
	e := newEnv(t)
	ids := map[string]bool{e.nodes[0].svc.ID(): true, e.nodes[1].svc.ID(): true}
	seen := map[string]bool{}
	for i := 0; i < 40 && len(seen) < 2; i++ {
		method := "Greeter.Hello"
		if i%2 == 1 {
			method = "greeter.Greeter/Hello"
		}
		rsp, body := post(t, e.srv.URL+"/api/greeter/"+method, "application/json", `{"name":"John"}`)
		if rsp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %s %s", method, rsp.Status, body)
		}
		var g greeting
		if err := json.Unmarshal([]byte(body), &g); err != nil {
			t.Fatalf("%s: %v: %s", method, err, body)
		}
		if g.Msg != "Hello John" || !ids[g.Node] {
			t.Fatalf("%s answered %s, want Hello John from one of %v", method, body, ids)
		}
		if got := rsp.Header.Get(gateway.NodeHeader); got != g.Node {
			t.Fatalf("%s header = %q, but node %q answered", gateway.NodeHeader, got, g.Node)
		}
		seen[g.Node] = true
	}
	if len(seen) != 2 {
		t.Fatalf("40 calls reached only %v", seen)
	}
}

func TestJSONByNameStreams(t *testing.T) {
	e := newEnv(t)
	rsp, body := post(t, e.srv.URL+"/api/greeter/Greeter.HelloStream", "application/json", `{"name":"John","count":3}`)
	if rsp.StatusCode != http.StatusOK || rsp.Header.Get("Content-Type") != "application/x-ndjson" {
		t.Fatalf("HelloStream: %s %s: %s", rsp.Status, rsp.Header.Get("Content-Type"), body)
	}
	lines := strings.Split(strings.TrimSpace(body), "\n")
	if len(lines) != 3 {
		t.Fatalf("HelloStream answered %d lines, want 3:\n%s", len(lines), body)
	}
	for i, l := range lines {
		var g greeting
		if err := json.Unmarshal([]byte(l), &g); err != nil || g.Msg != "Hello John #"+string(rune('1'+i)) {
			t.Fatalf("line %d = %s (%v)", i, l, err)
		}
	}
	if rsp.Header.Get(gateway.NodeHeader) == "" {
		t.Error("a stream's answer names no node")
	}

	rsp, body = post(t, e.srv.URL+"/api/greeter/Greeter.HelloMany", "application/x-ndjson", "{\"name\":\"a\"}\n{\"name\":\"b\"}\n")
	if rsp.StatusCode != http.StatusOK || !strings.Contains(body, `"Hello a, b"`) {
		t.Fatalf("HelloMany: %s %s", rsp.Status, body)
	}
	rsp, body = post(t, e.srv.URL+"/api/greeter/Greeter.Chat", "application/x-ndjson", "{\"name\":\"a\"}\n{\"name\":\"b\"}\n")
	if rsp.StatusCode != http.StatusOK || strings.Count(body, "\n") != 2 || !strings.Contains(body, `"Hello b"`) {
		t.Fatalf("Chat: %s %s", rsp.Status, body)
	}
	// An error in the middle of a stream is its last line.
	rsp, body = post(t, e.srv.URL+"/api/greeter/Greeter.HelloStream", "application/json", `{"name":"x","count":-1}`)
	if rsp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "invalid_argument") {
		t.Fatalf("HelloStream count -1: %s %s", rsp.Status, body)
	}
}

// The gateway answers each kind of bad input with its status and a
// Connect error body, and keeps serving.
func TestJSONByNameErrors(t *testing.T) {
	reg := memory.NewRegistry()
	startNode(t, reg, "greeter", hook)
	startNode(t, reg, "greeter", hook)
	startNode(t, reg, "bare", nil, micro.WithReflection(false))
	sick := startNode(t, reg, "sick", nil)
	sick.svc.Health().SetServingStatus("sick", healthpb.HealthCheckResponse_NOT_SERVING)
	_, srv := startGateway(t, reg, gateway.WithBodyLimit(1024))

	for _, tc := range []struct {
		name, path, body string
		header           []string
		want             int
		wantCode, inMsg  string
	}{
		{"invalid JSON", "/api/greeter/Greeter.Hello", `{"name":`, nil, 400, "invalid_argument", "not a valid greeter.Request"},
		{"wrong field", "/api/greeter/Greeter.Hello", `{"nom":"x"}`, nil, 400, "invalid_argument", "nom"},
		{"unknown service", "/api/nosuch/Greeter.Hello", `{}`, nil, 404, "not_found", `"nosuch"`},
		{"unknown method", "/api/greeter/Greeter.Bye", `{}`, nil, 404, "not_found", "Bye"},
		{"no method", "/api/greeter", `{}`, nil, 404, "not_found", "/api/{service}/{method}"},
		{"too large", "/api/greeter/Greeter.Hello", `{"name":"` + strings.Repeat("x", 2000) + `"}`, nil, 413, "resource_exhausted", "limit"},
		{"no healthy node", "/api/sick/Greeter.Hello", `{}`, nil, 503, "unavailable", ""},
		{"deadline", "/api/greeter/Greeter.Hello", `{"name":"slow"}`, []string{"Grpc-Timeout", "100m"}, 504, "deadline_exceeded", ""},
		{"connect deadline", "/api/greeter/Greeter.Hello", `{"name":"slow"}`, []string{"Connect-Timeout-Ms", "100"}, 504, "deadline_exceeded", ""},
		{"bad timeout", "/api/greeter/Greeter.Hello", `{}`, []string{"Grpc-Timeout", "soon"}, 400, "invalid_argument", "grpc-timeout"},
		{"no reflection", "/api/bare/Greeter.Hello", `{}`, nil, 501, "unimplemented", `service "bare"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rsp, body := post(t, srv.URL+tc.path, "application/json", tc.body, tc.header...)
			if rsp.StatusCode != tc.want {
				t.Fatalf("status %s, want %d: %s", rsp.Status, tc.want, body)
			}
			var eb struct{ Code, Message string }
			if err := json.Unmarshal([]byte(body), &eb); err != nil {
				t.Fatalf("body %q: %v", body, err)
			}
			if eb.Code != tc.wantCode || !strings.Contains(eb.Message, tc.inMsg) {
				t.Fatalf("error %+v, want code %s and a message with %q", eb, tc.wantCode, tc.inMsg)
			}
		})
	}
	// And it still serves.
	if rsp, body := post(t, srv.URL+"/api/greeter/Greeter.Hello", "application/json", `{"name":"John"}`); rsp.StatusCode != 200 || !strings.Contains(body, "Hello John") {
		t.Fatalf("after the errors: %s %s", rsp.Status, body)
	}
}

// The allow-listed headers reach the service as metadata, others do not;
// CORS is off until origins are given.
func TestHeadersAndCORS(t *testing.T) {
	reg := memory.NewRegistry()
	startNode(t, reg, "greeter", hook)
	_, srv := startGateway(t, reg)
	_, body := post(t, srv.URL+"/api/greeter/Greeter.Hello", "application/json", `{"name":"md"}`, "Authorization", "Bearer x", "Cookie", "c=1")
	if !strings.Contains(body, `authorization=[\"Bearer x\"] cookie=[]`) {
		t.Fatalf("the service saw %s", body)
	}

	preflight := func(url string) *http.Response {
		req, _ := http.NewRequestWithContext(testCtx(t), http.MethodOptions, url+"/greeter/greeter.Greeter/Hello", nil)
		req.Header.Set("Origin", "http://app.example")
		req.Header.Set("Access-Control-Request-Method", "POST")
		rsp, _ := do(t, req)
		return rsp
	}
	if got := preflight(srv.URL).Header.Get("Access-Control-Allow-Origin"); got != "" {
		t.Fatalf("CORS is off by default, but a preflight was allowed for %q", got)
	}
	_, corsSrv := startGateway(t, reg, gateway.WithCORS("http://app.example"))
	rsp := preflight(corsSrv.URL)
	if rsp.StatusCode != http.StatusNoContent || rsp.Header.Get("Access-Control-Allow-Origin") != "http://app.example" ||
		!strings.Contains(rsp.Header.Get("Access-Control-Allow-Headers"), "authorization") {
		t.Fatalf("preflight with CORS on: %s %v", rsp.Status, rsp.Header)
	}
}

// Every request is one access line.
func TestAccessLog(t *testing.T) {
	reg := memory.NewRegistry()
	startNode(t, reg, "greeter", nil)
	var mu sync.Mutex
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&lockedWriter{mu: &mu, w: &buf}, nil))
	_, srv := startGateway(t, reg, gateway.WithLogger(log))
	post(t, srv.URL+"/api/greeter/Greeter.Hello", "application/json", `{"name":"John"}`)
	post(t, srv.URL+"/api/nosuch/Greeter.Hello", "application/json", `{}`)
	mu.Lock()
	defer mu.Unlock()
	out := buf.String()
	for _, want := range []string{"path=/api/greeter/Greeter.Hello status=200", "path=/api/nosuch/Greeter.Hello status=404"} {
		if !strings.Contains(out, want) {
			t.Errorf("the log has no %q:\n%s", want, out)
		}
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// A real curl gets the answer.
func TestCurl(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("curl is not installed (Debian: apt-get install -y curl)")
	}
	e := newEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), defaultTestTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, curl, "-sS", "--max-time", "5", "-H", "Content-Type: application/json",
		"-d", `{"name":"John"}`, e.srv.URL+"/api/greeter/Greeter.Hello").CombinedOutput()
	if err != nil || !strings.Contains(string(out), `"msg":"Hello John"`) {
		t.Fatalf("curl: %v: %s", err, out)
	}
	_ = time.Second
}
