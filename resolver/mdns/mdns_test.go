package mdns_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/microgrpc/microgrpc/internal/greetertest"
	"github.com/microgrpc/microgrpc/internal/netns"
	pb "github.com/microgrpc/microgrpc/proto/greeter"
	"github.com/microgrpc/microgrpc/resolver"
	"github.com/microgrpc/microgrpc/resolver/mdns"
)

const (
	defaultTestTimeout = 10 * time.Second
	helperEnv          = "MDNS_TEST_HELPER_NODE"
)

var quiet = slog.New(slog.DiscardHandler)

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), defaultTestTimeout)
	t.Cleanup(cancel)
	return c
}

func newRegistry(t *testing.T) *mdns.Registry {
	t.Helper()
	if !netns.Inside() {
		t.Fatal("refusing to multicast outside the private network namespace")
	}
	r, err := mdns.NewRegistry(mdns.WithQueryInterval(400*time.Millisecond), mdns.WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func svc(name, id, addr string) *resolver.Service {
	return &resolver.Service{Name: name, Version: "v1", Endpoints: []resolver.Endpoint{{Name: "/greeter.Greeter/Hello"}},
		Nodes: []resolver.Node{{ID: id, Address: addr, Metadata: map[string]string{"zone": "a"}}}}
}

func next(t *testing.T, w resolver.Watcher) *resolver.Event {
	t.Helper()
	ch := make(chan *resolver.Event, 1)
	go func() {
		ev, err := w.Next()
		if err != nil {
			ch <- nil
			return
		}
		ch <- ev
	}()
	select {
	case ev := <-ch:
		if ev == nil {
			t.Fatal("watcher stopped")
		}
		return ev
	case <-time.After(defaultTestTimeout):
		w.Stop()
		t.Fatal("no event")
		return nil
	}
}

// A new node is seen as soon as it announces itself, and a deregistered
// one as soon as its goodbye arrives, long before its TTL (the kit checks
// what the events say; this, how fast they come).
func TestAnnouncementsAndGoodbyesAreFast(t *testing.T) {
	server, browser := newRegistry(t), newRegistry(t)
	w, err := browser.Watch(ctx(t), resolver.WatchService("rwd"))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	start := time.Now()
	s := svc("rwd", "n1", "127.0.0.1:1234")
	if err := server.Register(ctx(t), s, resolver.WithTTL(30*time.Second)); err != nil {
		t.Fatal(err)
	}
	if ev := next(t, w); ev.Action != resolver.Create {
		t.Fatalf("event %+v, want a create", ev)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("new node seen after %v, want within 1s", d)
	} else {
		t.Logf("new node seen %v after Register", d)
	}
	start = time.Now()
	if err := server.Deregister(ctx(t), s); err != nil {
		t.Fatal(err)
	}
	if ev := next(t, w); ev.Action != resolver.Delete {
		t.Fatalf("event %+v, want a delete", ev)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("deregistration seen after %v", d)
	} else {
		t.Logf("deregistration (goodbye) seen %v after Deregister", d)
	}
}

// Deregistering a node whose data just changed also says goodbye for the
// announcement of its old data, which otherwise keeps answering queries
// until RetireDelay passes and brings the node back meanwhile.
func TestDeregisterRetiresOldDataAtOnce(t *testing.T) {
	server, browser := newRegistry(t), newRegistry(t)
	tctx := ctx(t)
	s := svc("retire", "n1", "127.0.0.1:1234")
	if err := server.Register(tctx, s); err != nil {
		t.Fatal(err)
	}
	changed := svc("retire", "n1", "127.0.0.1:1234")
	changed.Nodes[0].Metadata["zone"] = "b"
	if err := server.Register(tctx, changed); err != nil {
		t.Fatal(err)
	}
	// Both announcements are seen: the old one still answers. (GetService
	// starts the browser.)
	browser.GetService(tctx, "retire")
	for browser.Sightings("retire") != 2 {
		if tctx.Err() != nil {
			t.Fatalf("browser saw %d announcements of the node, want the old and the new", browser.Sightings("retire"))
		}
		time.Sleep(20 * time.Millisecond)
	}
	deregistered := time.Now()
	if err := server.Deregister(tctx, changed); err != nil {
		t.Fatal(err)
	}
	// Gone at once (goodbyes take microseconds here), and still gone once
	// the browser has queried a few times and the old announcement's
	// retirement would have come.
	for d := time.Duration(0); d < mdns.RetireDelay+time.Second; d = time.Since(deregistered) {
		_, err := browser.GetService(tctx, "retire")
		gone := errors.Is(err, resolver.ErrNotFound) && browser.Sightings("retire") == 0
		if !gone && d > 500*time.Millisecond {
			t.Fatalf("the node is still (or again) announced %v after Deregister: GetService error %v, %d sightings", d, err, browser.Sightings("retire"))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func greeter(t *testing.T, id string) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	pb.RegisterGreeterServer(s, &greetertest.Server{Node: id})
	go s.Serve(lis)
	t.Cleanup(s.Stop)
	return lis.Addr().String()
}

func TestThreeNodesResolvedAndCalled(t *testing.T) {
	server, client := newRegistry(t), newRegistry(t)
	for _, id := range []string{"a", "b", "c"} {
		if err := server.Register(ctx(t), svc("three", id, greeter(t, id))); err != nil {
			t.Fatal(err)
		}
	}
	cc, err := grpc.NewClient("mdns:///three", grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithResolvers(mdns.NewBuilder(client)), grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"round_robin":{}}]}`))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	c := pb.NewGreeterClient(cc)
	seen := map[string]bool{}
	deadline := time.Now().Add(defaultTestTimeout)
	for len(seen) < 3 && time.Now().Before(deadline) {
		rsp, err := c.Hello(ctx(t), &pb.Request{}, grpc.WaitForReady(true))
		if err != nil {
			t.Fatal(err)
		}
		seen[rsp.GetNode()] = true
	}
	if len(seen) != 3 {
		t.Fatalf("reached %v, want three nodes", seen)
	}
}

func TestLongTXTValuesRoundTrip(t *testing.T) {
	server, browser := newRegistry(t), newRegistry(t)
	s := svc("longtxt", "n1", "127.0.0.1:1")
	long := strings.Repeat("0123456789", 70)
	s.Nodes[0].Metadata["long"] = long
	for i := range 120 { // more endpoints than fit: some are dropped
		s.Endpoints = append(s.Endpoints, resolver.Endpoint{Name: fmt.Sprintf("/longtxt.Service/Method%03d", i)})
	}
	if err := server.Register(ctx(t), s); err != nil {
		t.Fatal(err)
	}
	var got []*resolver.Service
	deadline := time.Now().Add(defaultTestTimeout)
	for time.Now().Before(deadline) {
		if svcs, err := browser.GetService(ctx(t), "longtxt"); err == nil {
			got = svcs
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(got) != 1 {
		t.Fatal("node with a long TXT record never seen")
	}
	if got[0].Nodes[0].Metadata["long"] != long {
		t.Fatalf("700-byte value came back as %d bytes", len(got[0].Nodes[0].Metadata["long"]))
	}
	if n := len(got[0].Endpoints); n == 0 || n >= 120 {
		t.Fatalf("%d endpoints came through; want some, with the rest dropped to fit", n)
	}
}

// A node whose process dies without a goodbye disappears within its TTL.
func TestKilledNodeExpiresWithinTTL(t *testing.T) {
	browser := newRegistry(t)
	w, err := browser.Watch(ctx(t), resolver.WatchService("killed"))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperNode$")
	cmd.Env = append(os.Environ(), helperEnv+"=killed")
	out, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer cmd.Process.Kill()
	line, _ := bufio.NewReader(out).ReadString('\n')
	if !strings.Contains(line, "registered") {
		t.Fatalf("helper said %q", line)
	}
	if ev := next(t, w); ev.Action != resolver.Create {
		t.Fatalf("event %v", ev.Action)
	}
	cmd.Process.Kill() // no goodbye
	start := time.Now()
	for {
		if ev := next(t, w); ev.Action == resolver.Delete {
			break
		}
	}
	d := time.Since(start)
	if d > 2*time.Second+time.Second {
		t.Fatalf("dead node removed after %v, want within its 2s TTL (+ one query interval)", d)
	}
	if d < time.Second {
		t.Fatalf("dead node removed after %v: too early for a silent death, was it a goodbye?", d)
	}
	t.Logf("silently dead node removed after %v (TTL 2s)", d)
}

// TestHelperNode is not a test: it is the process TestKilledNodeExpiresWithinTTL kills.
func TestHelperNode(t *testing.T) {
	name := os.Getenv(helperEnv)
	if name == "" {
		t.Skip("helper process only")
	}
	r, err := mdns.NewRegistry(mdns.WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Register(context.Background(), svc(name, "doomed", "127.0.0.1:9"), resolver.WithTTL(2*time.Second)); err != nil {
		t.Fatal(err)
	}
	fmt.Println("registered")
	time.Sleep(time.Minute) // until killed
}

// The global "mdns" scheme, for a program that never builds a registry.
func TestGlobalScheme(t *testing.T) {
	server := newRegistry(t)
	if err := server.Register(ctx(t), svc("global", "g", greeter(t, "g"))); err != nil {
		t.Fatal(err)
	}
	cc, err := grpc.NewClient("mdns:///global", grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	rsp, err := pb.NewGreeterClient(cc).Hello(ctx(t), &pb.Request{}, grpc.WaitForReady(true))
	if err != nil || rsp.GetNode() != "g" {
		t.Fatalf("mdns:/// call = %v, %v", rsp, err)
	}
}

func TestBadInterfaceIsAClearError(t *testing.T) {
	_, err := mdns.NewRegistry(mdns.WithInterfaces("nonexistent0"))
	if err == nil || !strings.Contains(err.Error(), "nonexistent0") {
		t.Fatalf("NewRegistry = %v", err)
	}
}
