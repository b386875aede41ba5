package stream_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/microgrpc/microgrpc/examples/greeter/handler"
	"github.com/microgrpc/microgrpc/internal/exampletest"
	"github.com/microgrpc/microgrpc/internal/netns"
	"github.com/microgrpc/microgrpc/micro"
	pb "github.com/microgrpc/microgrpc/proto/greeter"
	"github.com/microgrpc/microgrpc/resolver"
	"github.com/microgrpc/microgrpc/resolver/mdns"
	"github.com/microgrpc/microgrpc/resolver/memory"
)

// The programs use mdns by default: everything here runs in a private
// network namespace, and so do the programs the tests start.
func TestMain(m *testing.M) { netns.VerifyTestMain(m) }

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), exampletest.Timeout)
	t.Cleanup(cancel)
	return ctx
}

// The client's three streaming calls against the example server, as two
// processes finding each other over mDNS.
func TestServerClientAndBidiStreaming(t *testing.T) {
	server := exampletest.Start(t, exampletest.Build(t, "../greeter/server"), nil, "-stream_interval", "10ms")
	server.WaitFor("service started")
	client := exampletest.Start(t, exampletest.Build(t, "./client"), nil, "-count", "5", "-names", "Ann,Bob")
	if err := client.Wait(); err != nil {
		t.Fatalf("client: %v\n%s", err, client.Output())
	}
	out := client.Output()
	for _, want := range []string{"stream: Hello John #1 ", "stream: Hello John #5 ", "stream: 5 greetings",
		"many: Hello Ann, Bob", "chat: Hello Ann", "chat: Hello Bob"} {
		if !strings.Contains(out, want) {
			t.Errorf("client output lacks %q:\n%s", want, out)
		}
	}
	if err := server.Stop(); err != nil {
		t.Fatal(err)
	}
}

// A stream opened through svc.Dial lands on a node that is ready, never
// on a registered node that does not answer.
func TestStreamLandsOnReadyNode(t *testing.T) {
	reg, err := mdns.NewRegistry()
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	dead := &resolver.Service{Name: "greeter", Nodes: []resolver.Node{{ID: "dead", Address: "127.0.0.1:1"}}}
	if err := reg.Register(testCtx(t), dead, resolver.WithTTL(time.Minute)); err != nil {
		t.Fatal(err)
	}
	defer reg.Deregister(context.Background(), dead)
	server := exampletest.Start(t, exampletest.Build(t, "../greeter/server"), nil, "-stream_interval", "1ms")
	server.WaitFor("service started")
	client := exampletest.Build(t, "./client")
	for i := range 5 {
		c := exampletest.Start(t, client, nil, "-only", "stream", "-count", "3")
		if err := c.Wait(); err != nil {
			t.Fatalf("stream %d: %v\n%s", i, err, c.Output())
		}
		if !strings.Contains(c.Output(), "stream: 3 greetings") {
			t.Fatalf("stream %d:\n%s", i, c.Output())
		}
	}
}

var nodeRE = regexp.MustCompile(`\(node ([^)]+)\)`)

// A server stream goes on when another node of the service is killed
// (SIGKILL: no goodbye, no deregistration) in the middle of it.
func TestServerStreamSurvivesAnotherNodeKilled(t *testing.T) {
	bin := exampletest.Build(t, "../greeter/server")
	a := exampletest.Start(t, bin, nil, "-stream_interval", "50ms")
	b := exampletest.Start(t, bin, nil, "-stream_interval", "50ms")
	a.WaitFor("service started")
	b.WaitFor("service started")
	const n = 40 // two seconds of stream
	c := exampletest.Start(t, exampletest.Build(t, "./client"), nil, "-only", "stream", "-count", fmt.Sprint(n))
	c.WaitFor("#3 ")
	m := nodeRE.FindStringSubmatch(c.Output())
	if m == nil {
		t.Fatalf("no node in the client's output:\n%s", c.Output())
	}
	serving, other := a, b
	if strings.Contains(b.Output(), m[1]) {
		serving, other = b, a
	}
	other.Kill()
	if err := c.Wait(); err != nil {
		t.Fatalf("the stream broke when another node died: %v\n%s", err, c.Output())
	}
	if !strings.Contains(c.Output(), fmt.Sprintf("stream: %d greetings", n)) {
		t.Fatalf("stream incomplete:\n%s", c.Output())
	}
	if err := serving.Stop(); err != nil {
		t.Fatal(err)
	}
}

// A node's graceful shutdown lets the streams in progress finish within
// the grace period, and cancels those that would outlast it.
func TestGracefulShutdownAndStreams(t *testing.T) {
	for _, tc := range []struct {
		name   string
		count  int32 // greetings, 20 ms apart
		finish bool
	}{
		{"finishes within the grace period", 20, true},   // 0.4 s
		{"cancelled after the grace period", 500, false}, // 10 s
	} {
		t.Run(tc.name, func(t *testing.T) {
			const grace = time.Second
			reg := memory.NewRegistry()
			ctx, stop := context.WithCancel(context.Background())
			defer stop()
			svc := micro.NewService(micro.WithName("greeter"), micro.WithRegistry(reg), micro.WithAddress("127.0.0.1:0"),
				micro.WithContext(ctx), micro.WithSignal(false), micro.WithDeregisterWait(0), micro.WithGracePeriod(grace))
			pb.RegisterGreeterServer(svc.Server(), &handler.Greeter{Node: "n1", Interval: 20 * time.Millisecond})
			ran := make(chan error, 1)
			go func() { ran <- svc.Run() }()
			client := micro.NewService(micro.WithName("greeter.client"), micro.WithRegistry(reg))
			defer client.Close()
			stream, err := pb.NewGreeterClient(client.Dial("greeter")).HelloStream(testCtx(t), &pb.Request{Name: "x", Count: tc.count}, grpc.WaitForReady(true))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := stream.Recv(); err != nil {
				t.Fatal(err)
			}
			got := 1
			start := time.Now()
			stop() // graceful shutdown begins, the stream in progress
			var streamErr error
			for {
				if _, err := stream.Recv(); err != nil {
					if !errors.Is(err, io.EOF) {
						streamErr = err
					}
					break
				}
				got++
			}
			if err := <-ran; err != nil {
				t.Fatal(err)
			}
			took := time.Since(start)
			if took > grace+2*time.Second {
				t.Fatalf("shutdown took %v, grace %v", took, grace)
			}
			if tc.finish && (streamErr != nil || got != int(tc.count)) {
				t.Fatalf("stream got %d of %d, error %v: it should have finished within the grace period", got, tc.count, streamErr)
			}
			if !tc.finish && (streamErr == nil || got >= int(tc.count)) {
				t.Fatalf("stream got %d of %d, error %v: it should have been cancelled after the grace period", got, tc.count, streamErr)
			}
			t.Logf("%d greetings, %v, stop took %v", got, streamErr, took)
		})
	}
}
