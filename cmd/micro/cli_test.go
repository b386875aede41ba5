package main

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/naming/endpoints"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/reflection"

	"github.com/microgrpc/microgrpc/internal/etcdtest"
	"github.com/microgrpc/microgrpc/internal/exampletest"
	"github.com/microgrpc/microgrpc/internal/greetertest"
	pb "github.com/microgrpc/microgrpc/proto/greeter"
)

// What a user does with the built binary, against two greeter nodes (n1,
// n2) registered in etcd.
func TestEtcd(t *testing.T) {
	etcd, err := etcdtest.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(etcd.Close) // after the nodes' cleanups: they deregister
	env := []string{"MICRO_REGISTRY=etcd", "MICRO_REGISTRY_ADDRESS=" + etcd.Endpoint()}
	c := &cli{t: t, bin: exampletest.Build(t, "github.com/microgrpc/microgrpc/cmd/micro"), env: env}
	exercise(t, c, env, "etcd registry at "+etcd.Endpoint())
	t.Run("plain gRPC servers", func(t *testing.T) { plainServers(t, c, etcd.Endpoint()) })
}

// The same with mDNS, the default registry, inside the test's private
// network namespace.
func TestMDNS(t *testing.T) {
	env := []string{"MICRO_REGISTRY=mdns"}
	c := &cli{t: t, bin: exampletest.Build(t, "github.com/microgrpc/microgrpc/cmd/micro"), env: env}
	exercise(t, c, env, "mdns registry")
}

// exercise runs every command against nodes n1 and n2; reg is how the
// errors name the registry.
func exercise(t *testing.T, c *cli, env []string, reg string) {
	nodes := map[string]*node{"n1": startNode(t, "n1", env), "n2": startNode(t, "n2", env)}

	t.Run("services", func(t *testing.T) {
		c.t = t
		eventually(t, "greeter with 2 nodes in micro services", func() string {
			out := c.ok("", "services")
			for _, line := range strings.Split(out, "\n") {
				if f := strings.Fields(line); len(f) == 3 && f[0] == "greeter" && f[2] == "2" {
					return ""
				}
			}
			return "micro services printed:\n" + out
		})
		out := c.ok("", "services")
		if !strings.HasPrefix(out, "SERVICE") || !strings.Contains(out, "micro.broker.events") {
			t.Fatalf("micro services printed:\n%s", out)
		}
		var list []serviceSummary
		decode(t, c.ok("", "services", "-o", "json"), &list)
		found := false
		for _, s := range list {
			found = found || s.Name == "greeter" && s.Nodes == 2 && len(s.Versions) == 1 && s.Versions[0] == ""
		}
		if !found {
			t.Fatalf("micro services -o json: %+v, want greeter with 2 nodes of version \"\"", list)
		}
	})

	t.Run("describe", func(t *testing.T) {
		c.t = t
		out := c.ok("", "describe", "greeter")
		for _, want := range []string{
			"Service greeter in the " + reg + "\n",
			"n1 ", "n2 ", "SERVING",
			"greeter.Greeter/Hello ", "unary", "greeter.Greeter/HelloStream", "server streaming", "bidi streaming",
			"greeter.Greeter is a service:\nservice Greeter {\n  rpc Hello ( .greeter.Request ) returns ( .greeter.Response );\n",
			"  rpc Chat ( stream .greeter.Request ) returns ( stream .greeter.Response );\n}\n",
			"greeter.Request is a message:\nmessage Request {\n  string name = 1;\n  int32 count = 2;\n}",
			"greeter.Response is a message:",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("micro describe greeter does not show %q:\n%s", want, out)
			}
		}
		var d description
		decode(t, c.ok("", "describe", "greeter", "-o", "json"), &d)
		if len(d.Nodes) != 2 || d.Nodes[0].ID != "n1" || d.Nodes[1].ID != "n2" || !d.Nodes[0].Health.serving() || d.Nodes[0].Address == "" {
			t.Fatalf("describe -o json nodes: %+v", d.Nodes)
		}
		hello := false
		for _, e := range d.Endpoints {
			hello = hello || e.Method == "greeter.Greeter/Hello" && e.Request == "greeter.Request" && e.Response == "greeter.Response"
		}
		if !hello || len(d.Endpoints) != 4 || d.ReflectionError != "" {
			t.Fatalf("describe -o json endpoints: %+v (reflection error %q)", d.Endpoints, d.ReflectionError)
		}
	})

	t.Run("call", func(t *testing.T) {
		c.t = t
		// Every call is a new process, connected first to the node that
		// answered first: over many calls, both nodes get some.
		seen := map[string]int{}
		calls := 0
		for ; calls < 40 && (seen["n1"] == 0 || seen["n2"] == 0); calls++ {
			out := c.ok("", "call", "greeter", "greeter.Greeter/Hello", `{"name":"John"}`)
			switch out {
			case `{"msg":"Hello John","node":"n1"}` + "\n":
				seen["n1"]++
			case `{"msg":"Hello John","node":"n2"}` + "\n":
				seen["n2"]++
			default:
				t.Fatalf("micro call printed %q", out)
			}
		}
		t.Logf("%d calls: %v", calls, seen)
		if seen["n1"] == 0 || seen["n2"] == 0 {
			t.Fatalf("%d calls reached only %v", calls, seen)
		}
		// go-micro's spelling, the request from a file and from stdin.
		file := filepath.Join(t.TempDir(), "req.json")
		os.WriteFile(file, []byte(`{"name":"File"}`), 0o600)
		for _, tc := range []struct {
			stdin string
			args  []string
			want  string
		}{
			{"", []string{"Greeter.Hello", `{"name":"Micro"}`}, `"msg":"Hello Micro"`},
			{"", []string{"/greeter.Greeter/Hello", "-d", "@" + file}, `"msg":"Hello File"`},
			{`{"name":"Stdin"}`, []string{"Greeter.Hello", "-d", "-"}, `"msg":"Hello Stdin"`},
			{"", []string{"Greeter.Hello"}, `{"msg":"Hello ",`},
			{"", []string{"Greeter.Hello", "{}", "--timeout", "5s", "-o", "json"}, `{"msg":"Hello ",`},
		} {
			if out := c.ok(tc.stdin, append([]string{"call", "greeter"}, tc.args...)...); !strings.Contains(out, tc.want) {
				t.Errorf("micro call greeter %v printed %q, want %s", tc.args, out, tc.want)
			}
		}
		// --node pins a node, --hash keeps a key on one.
		for range 3 {
			if out := c.ok("", "call", "greeter", "Greeter.Hello", "{}", "--node", "n2"); !strings.Contains(out, `"node":"n2"`) {
				t.Fatalf("--node n2 reached %s", out)
			}
		}
		first := c.ok("", "call", "--hash", "user-42", "greeter", "Greeter.Hello", "{}")
		for range 3 {
			if out := c.ok("", "call", "--hash", "user-42", "greeter", "Greeter.Hello", "{}"); out != first {
				t.Fatalf("--hash user-42 reached %s, then %s", first, out)
			}
		}
	})

	t.Run("streams", func(t *testing.T) {
		c.t = t
		out := c.ok("", "call", "greeter", "Greeter.HelloStream", `{"name":"J","count":5}`)
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != 5 || !strings.HasPrefix(lines[0], `{"msg":"Hello J #1","node":"n`) || !strings.HasPrefix(lines[4], `{"msg":"Hello J #5"`) {
			t.Fatalf("server streaming printed:\n%s", out)
		}
		out = c.ok("{\"name\":\"a\"}\n{\"name\":\"b\"}\n", "call", "greeter", "greeter.Greeter/HelloMany")
		if !strings.HasPrefix(out, `{"msg":"Hello a, b","node":"n`) || strings.Count(out, "\n") != 1 {
			t.Fatalf("client streaming printed:\n%s", out)
		}
		out = c.ok("{\"name\":\"x\"}\n{\"name\":\"y\"}\n{\"name\":\"z\"}\n", "call", "greeter", "Greeter.Chat")
		if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 3 || !strings.HasPrefix(lines[2], `{"msg":"Hello z"`) {
			t.Fatalf("bidi streaming printed:\n%s", out)
		}
	})

	t.Run("health", func(t *testing.T) {
		c.t = t
		out := c.ok("", "health", "greeter")
		if strings.Count(out, " SERVING") != 2 {
			t.Fatalf("micro health greeter printed:\n%s", out)
		}
		nodes["n1"].send("not-serving")
		nodes["n1"].waitFor("health NOT_SERVING")
		r := c.run("", "health", "greeter")
		if r.code != 1 || !strings.Contains(r.stdout, "NOT_SERVING") || !strings.Contains(r.stderr, "1 of 2 nodes of greeter not serving: n1 NOT_SERVING") {
			t.Fatalf("micro health with n1 NOT_SERVING: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		var hs []nodeHealth
		decode(t, c.run("", "health", "greeter", "-o", "json").stdout, &hs)
		if len(hs) != 2 || hs[0].Status != "NOT_SERVING" || hs[1].Status != "SERVING" || hs[0].Service != "greeter" {
			t.Fatalf("micro health -o json: %+v", hs)
		}
		// The balancer sends calls only to the node that serves.
		eventually(t, "calls to avoid the NOT_SERVING node", func() string {
			for range 5 {
				if out := c.ok("", "call", "greeter", "Greeter.Hello"); !strings.Contains(out, `"node":"n2"`) {
					return "a call reached " + out
				}
			}
			return ""
		})
		nodes["n1"].send("serving")
		nodes["n1"].waitFor("health SERVING")
		c.ok("", "health", "greeter")
	})

	t.Run("publish", func(t *testing.T) {
		c.t = t
		out := c.ok("", "publish", "events", `{"id":"1","message":"hi"}`)
		if !strings.HasPrefix(out, "published 25 bytes to events on the http broker") {
			t.Fatalf("micro publish printed %q", out)
		}
		// Both subscribers get it (the http broker returned once both had
		// handled it; their output reaches the test a moment later).
		for _, id := range []string{"n1", "n2"} {
			nodes[id].waitFor("event 1 hi\n")
		}
	})

	t.Run("subscribe", func(t *testing.T) {
		c.t = t
		sub := c.start("subscribe", "events")
		sub.WaitFor("subscribed to events on the http broker")
		eventually(t, "the subscriber to get the message", func() string {
			c.ok("", "publish", "events", `{"id":"2"}`, "-H", "x-trace=abc")
			if out := sub.Output(); !strings.Contains(out, "events  content-type=application/json x-trace=abc\n{\"id\":\"2\"}\n") {
				return "micro subscribe printed:\n" + out
			}
			return ""
		})
		if err := sub.Stop(); err != nil {
			t.Fatalf("micro subscribe on SIGINT: %v\n%s", err, sub.Output())
		}
		sub = c.start("subscribe", "events", "-o", "json", "--queue", "cli")
		sub.WaitFor("subscribed to events in queue group cli")
		eventually(t, "the subscriber to get the message", func() string {
			c.ok("", "publish", "events", `{"id":"3"}`)
			if out := sub.Output(); !strings.Contains(out, `{"topic":"events","header":{"content-type":"application/json"},"body":{"id":"3"}}`) {
				return "micro subscribe -o json printed:\n" + out
			}
			return ""
		})
		if err := sub.Stop(); err != nil {
			t.Fatalf("micro subscribe on SIGINT: %v\n%s", err, sub.Output())
		}
	})

	t.Run("gateway", func(t *testing.T) {
		c.t = t
		gw := c.start("gateway", "--address", "127.0.0.1:0")
		gw.WaitFor("); Ctrl-C to stop")
		_, rest, _ := strings.Cut(gw.Output(), "micro gateway: serving ")
		base, _, _ := strings.Cut(rest, " ")
		ids := map[string]bool{}
		for i := 0; i < 40 && len(ids) < 2; i++ {
			ctx, cancel := context.WithTimeout(context.Background(), cliTimeout)
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/api/greeter/Greeter.Hello", strings.NewReader(`{"name":"John"}`))
			rsp, err := http.DefaultClient.Do(req)
			if err != nil {
				cancel()
				t.Fatal(err)
			}
			body, _ := io.ReadAll(rsp.Body)
			rsp.Body.Close()
			cancel()
			var g struct{ Msg, Node string }
			if rsp.StatusCode != 200 || json.Unmarshal(body, &g) != nil || g.Msg != "Hello John" || rsp.Header.Get("Micro-Node") != g.Node {
				t.Fatalf("POST /api/greeter/Greeter.Hello: %s %s %v\n%s", rsp.Status, body, rsp.Header, gw.Output())
			}
			ids[g.Node] = true
		}
		if !ids["n1"] || !ids["n2"] {
			t.Fatalf("the gateway's calls reached %v, want n1 and n2", ids)
		}
		if err := gw.Stop(); err != nil {
			t.Fatalf("micro gateway on SIGINT: %v\n%s", err, gw.Output())
		}
		if out := gw.Output(); !strings.Contains(out, "path=/api/greeter/Greeter.Hello status=200") {
			t.Fatalf("micro gateway logged no access line:\n%s", out)
		}
	})

	t.Run("watch", func(t *testing.T) {
		c.t = t
		w := c.start("watch", "greeter")
		w.WaitFor("watching greeter in the " + reg + " (Ctrl-C to stop)")
		n3 := startNode(t, "n3", env)
		eventually(t, "a create of n3", func() string {
			if !strings.Contains(w.Output(), "create  greeter  node n3 at 127.0.0.1:") {
				return "micro watch printed:\n" + w.Output()
			}
			return ""
		})
		n3.stop()
		eventually(t, "a delete of n3", func() string {
			if !strings.Contains(w.Output(), "delete  greeter  node n3 at 127.0.0.1:") {
				return "micro watch printed:\n" + w.Output()
			}
			return ""
		})
		if err := w.Stop(); err != nil {
			t.Fatalf("micro watch on SIGINT: %v\n%s", err, w.Output())
		}
		w = c.start("watch", "-o", "json")
		w.WaitFor("watching every service")
		n4 := startNode(t, "n4", env)
		eventually(t, "a create of n4 in JSON", func() string {
			for _, line := range strings.Split(w.Output(), "\n") {
				var ev watchEvent
				if json.Unmarshal([]byte(line), &ev) == nil && ev.Action == "create" && ev.Service == "greeter" && len(ev.Nodes) == 1 && ev.Nodes[0].ID == "n4" {
					return ""
				}
			}
			return "micro watch -o json printed:\n" + w.Output()
		})
		n4.stop()
		w.Stop()
	})

	t.Run("errors", func(t *testing.T) {
		c.t = t
		c.fails(1, []string{`micro call: service "nope" not found in the ` + reg + " (micro services lists"}, "call", "nope", "Greeter.Hello", "{}")
		c.fails(1, []string{`micro call: greeter: service greeter.Greeter has no method "Nope" (its methods: Chat, Hello, HelloMany, HelloStream)`},
			"call", "greeter", "greeter.Greeter/Nope", "{}")
		c.fails(1, []string{`micro call: greeter: the server has no service "Nope"`, "greeter.Greeter"}, "call", "greeter", "Nope.Hello")
		c.fails(1, []string{"micro call: the request is not valid JSON: unexpected end of JSON input"}, "call", "greeter", "Greeter.Hello", `{"name":`)
		c.fails(1, []string{"micro call: the request for /greeter.Greeter/Hello is not a valid greeter.Request in JSON", `unknown field "nme"`},
			"call", "greeter", "Greeter.Hello", `{"nme":"x"}`)
		c.fails(1, []string{"micro call: request 2 of the input is not valid JSON"}, "call", "greeter", "Greeter.HelloMany", "-d", `{"name":"a"} {"name":`)
		c.fails(1, []string{"micro call: greeter.Greeter/Hello on greeter failed: FailedPrecondition: failed as asked: please"},
			"call", "greeter", "Greeter.Hello", "-H", "x-fail=please")
		c.fails(1, []string{`micro call: service greeter has no node "n9" (its nodes: n1, n2)`}, "call", "greeter", "Greeter.Hello", "--node", "n9")
		c.fails(1, []string{"micro call: read ", "no such file"}, "call", "greeter", "Greeter.Hello", "-d", "@/nonexistent.json")
		c.fails(1, []string{`micro describe: service "nope" not found`}, "describe", "nope")
		c.fails(1, []string{`micro health: service "nope" not found`}, "health", "nope")
		c.fails(1, []string{"micro publish: the message is not valid JSON"}, "publish", "events", "{")
		c.fails(2, []string{"micro call: want SERVICE METHOD [JSON] (micro call -h for help)"}, "call", "greeter")
		c.fails(2, []string{`micro services: unexpected argument "extra"`}, "services", "extra")
		c.fails(2, []string{"micro call: the data is given twice"}, "call", "greeter", "Greeter.Hello", "{}", "-d", "{}")
		c.fails(2, []string{"micro publish: broker: invalid topic"}, "publish", "a/b", "{}")
		c.fails(2, []string{"micro services: flag provided but not defined: -nope"}, "services", "--nope")
		c.fails(2, []string{`micro: unknown command "nope"`}, "nope")
		c.fails(1, []string{"micro services: micro: plugins: unknown plugin", `"consul"`}, "services", "--registry=consul")
	})
}

// Plain grpc-go servers registered by etcd's endpoints.Manager, one with
// reflection and one without.
func plainServers(t *testing.T, c *cli, etcdAddr string) {
	c.t = t
	ec, err := clientv3.New(clientv3.Config{Endpoints: []string{etcdAddr}, DialTimeout: 10 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ec.Close() })
	register := func(service, id string, withReflection bool) {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		srv := grpc.NewServer()
		pb.RegisterGreeterServer(srv, &greetertest.Server{Node: id})
		if withReflection {
			reflection.Register(srv)
		}
		go srv.Serve(lis)
		t.Cleanup(srv.Stop)
		em, err := endpoints.NewManager(ec, "/micro/registry/"+service)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := em.AddEndpoint(ctx, "/micro/registry/"+service+"/"+id, endpoints.Endpoint{Addr: lis.Addr().String()}); err != nil {
			t.Fatal(err)
		}
	}
	register("plain", "plain-1", true)
	register("noreflect", "noreflect-1", false)

	out := c.ok("", "services")
	for _, want := range []string{"plain ", "noreflect "} {
		if !strings.Contains(out, want) {
			t.Fatalf("micro services does not list %q:\n%s", want, out)
		}
	}
	if out := c.ok("", "call", "plain", "greeter.Greeter/Hello", `{"name":"John"}`); out != `{"msg":"Hello John","node":"plain-1"}`+"\n" {
		t.Fatalf("call to the plain server printed %q", out)
	}
	// No endpoints in its record: describe finds them by reflection.
	out = c.ok("", "describe", "plain")
	for _, want := range []string{"plain-1", "greeter.Greeter/HelloMany", "message Request {"} {
		if !strings.Contains(out, want) {
			t.Errorf("micro describe plain does not show %q:\n%s", want, out)
		}
	}
	// It has no health service: health says so, and fails.
	if r := c.run("", "health", "plain"); r.code != 1 || !strings.Contains(r.stdout, "UNIMPLEMENTED") {
		t.Errorf("micro health plain: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	line := c.fails(1, []string{"micro call: noreflect: the server does not serve gRPC reflection", "reflection.Register"},
		"call", "noreflect", "greeter.Greeter/Hello", "{}")
	t.Logf("without reflection: %s", line)
	out = c.ok("", "describe", "noreflect")
	if !strings.Contains(out, "noreflect-1") || !strings.Contains(out, "No message types: the server does not serve gRPC reflection") {
		t.Errorf("micro describe noreflect:\n%s", out)
	}
}

func decode(t *testing.T, js string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(js), v); err != nil {
		t.Fatalf("not JSON (%v):\n%s", err, js)
	}
}

// micro -h and micro COMMAND -h describe every command.
func TestHelp(t *testing.T) {
	c := &cli{t: t, bin: exampletest.Build(t, "github.com/microgrpc/microgrpc/cmd/micro")}
	out := c.ok("", "-h")
	for _, cmd := range commands {
		if !strings.Contains(out, "  "+cmd.name+" ") {
			t.Errorf("micro -h does not list %s:\n%s", cmd.name, out)
		}
		help := c.ok("", cmd.name, "-h")
		for _, want := range []string{"usage: " + cmd.synopsis, "Flags:", "-o format", "-registry string", "MICRO_REGISTRY", "Example"} {
			if !strings.Contains(help, want) {
				t.Errorf("micro %s -h does not say %q:\n%s", cmd.name, want, help)
			}
		}
	}
	if r := c.run(""); r.code != 2 || !strings.Contains(r.stderr, "Commands:") {
		t.Errorf("micro without a command: exit %d\n%s", r.code, r.stderr)
	}
	if got := c.ok("", "help", "call"); !strings.Contains(got, "usage: micro call") {
		t.Errorf("micro help call:\n%s", got)
	}
}
