package etcd_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/client/v3/naming/endpoints"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/microgrpc/microgrpc/internal/etcdtest"
	pb "github.com/microgrpc/microgrpc/proto/greeter"
	"github.com/microgrpc/microgrpc/resolver"
	"github.com/microgrpc/microgrpc/resolver/etcd"
)

// A plain grpc-go server registered by etcd's own endpoints.Manager is a
// node like ours: resolved and called next to microgrpc nodes, through a
// registry builder and through the global etcd:// scheme, and gone when
// its endpoint is deleted.
func TestEndpointsManagerRecordsAreNodes(t *testing.T) {
	r := newRegistry(t, server.Endpoint())
	ours, _ := greeter(t, "ours")
	if err := r.Register(ctx(t), node("ours", ours)); err != nil {
		t.Fatal(err)
	}
	plain, _ := greeter(t, "plain")
	em, err := endpoints.NewManager(client(t, server.Endpoint()), prefix(t)+"/greeter")
	if err != nil {
		t.Fatal(err)
	}
	key := prefix(t) + "/greeter/" + plain
	if err := em.AddEndpoint(ctx(t), key, endpoints.Endpoint{Addr: plain}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "both nodes listed", func() bool { return len(nodeIDs(t, r, "greeter")) == 2 })
	svcs, _ := r.GetService(ctx(t), "greeter")
	for _, s := range svcs {
		for _, n := range s.Nodes {
			if n.ID == plain && (n.Address != plain || n.HealthService != "") {
				t.Fatalf("endpoints.Manager node: %+v, want its address and no health service name", n)
			}
		}
	}
	reaches := func(c pb.GreeterClient) map[string]bool {
		seen := map[string]bool{}
		for range 40 {
			rsp, err := c.Hello(ctx(t), &pb.Request{}, grpc.WaitForReady(true))
			if err != nil {
				t.Fatal(err)
			}
			seen[rsp.GetNode()] = true
		}
		return seen
	}
	c := dial(t, etcd.NewBuilder(r), "etcd:///greeter")
	if seen := reaches(c); !seen["ours"] || !seen["plain"] {
		t.Fatalf("calls reached %v, want both the microgrpc and the plain node", seen)
	}
	if err := em.DeleteEndpoint(ctx(t), key); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the plain node to go", func() bool { return len(nodeIDs(t, r, "greeter")) == 1 })
	eventually(t, "calls to stop reaching the deleted node", func() bool { return !reaches(c)["plain"] })
}

// The same through the global scheme (default prefix), as a program that
// uses nothing of microgrpc but the import does.
func TestEndpointsManagerRecordsThroughGlobalScheme(t *testing.T) {
	name := fmt.Sprintf("plain-greeter-%d", time.Now().UnixNano())
	plain, _ := greeter(t, "plain")
	em, err := endpoints.NewManager(client(t, server.Endpoint()), etcd.DefaultPrefix+"/"+name)
	if err != nil {
		t.Fatal(err)
	}
	key := etcd.DefaultPrefix + "/" + name + "/" + plain
	if err := em.AddEndpoint(ctx(t), key, endpoints.Endpoint{Addr: plain, Metadata: map[string]any{"zone": "b"}}); err != nil {
		t.Fatal(err)
	}
	defer em.DeleteEndpoint(context.Background(), key)
	cc, err := grpc.NewClient("etcd://"+server.Endpoint()+"/"+name, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	rsp, err := pb.NewGreeterClient(cc).Hello(ctx(t), &pb.Request{}, grpc.WaitForReady(true))
	if err != nil || rsp.GetNode() != "plain" {
		t.Fatalf("etcd:// call to an endpoints.Manager node: %v, %v", rsp, err)
	}
}

// Keys that name no node are skipped: a node id with '/' (Register
// refuses those), and values that do not decode.
func TestKeysThatNameNoNodeAreSkipped(t *testing.T) {
	r := newRegistry(t, server.Endpoint())
	c := client(t, server.Endpoint())
	c.Put(ctx(t), prefix(t)+"/greeter/a/b", `{"Op":0,"Addr":"127.0.0.1:1"}`)
	c.Put(ctx(t), prefix(t)+"/greeter/op-missing", `{"Addr":"127.0.0.1:1"}`)
	c.Put(ctx(t), prefix(t)+"/greeter/ok", `{"Op":0,"Addr":"127.0.0.1:2","Metadata":{"zone":"c"}}`)
	ids := nodeIDs(t, r, "greeter")
	if len(ids) != 1 || ids[0] != "ok" {
		t.Fatalf("nodes %v, want only the well-formed one", ids)
	}
}

// A live node whose key is overwritten with garbage puts its record back,
// and a watcher drops the node while its record does not decode.
func TestOverwrittenKeyIsRepaired(t *testing.T) {
	r := newRegistry(t, server.Endpoint())
	if err := r.Register(ctx(t), node("a", "127.0.0.1:1")); err != nil {
		t.Fatal(err)
	}
	w, err := r.Watch(ctx(t), resolver.WatchService("greeter"))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	c := client(t, server.Endpoint())
	key := prefix(t) + "/greeter/a"
	good, err := c.Get(ctx(t), key)
	if err != nil || len(good.Kvs) != 1 {
		t.Fatal(good, err)
	}
	if _, err := c.Put(ctx(t), key, "garbage"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the overwritten key to be put back", func() bool {
		resp, err := c.Get(ctx(t), key)
		return err == nil && len(resp.Kvs) == 1 && bytes.Equal(resp.Kvs[0].Value, good.Kvs[0].Value)
	})
	// The watcher saw the node go (garbage) and come back (repaired).
	var actions []resolver.Action
	for len(actions) < 2 {
		ev, err := w.Next()
		if err != nil {
			t.Fatal(err)
		}
		actions = append(actions, ev.Action)
	}
	if actions[0] != resolver.Delete || actions[1] != resolver.Create {
		t.Fatalf("watch events %v, want delete then create", actions)
	}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// With etcd unreachable, reads fail within the read timeout naming etcd's
// address and why (not only "context deadline exceeded"); a client's
// calls fail fast with Unavailable saying the same; the resolver retries
// by itself and calls succeed once etcd is back; the first registration
// of a node says which address it tried and why.
func TestUnreachableEtcdIsClear(t *testing.T) {
	srv, err := etcdtest.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	var logs lockedBuffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	r, err := etcd.NewRegistry(etcd.WithEndpoints(srv.Endpoint()), etcd.WithLogger(logger), etcd.WithDialTimeout(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	srv.Stop()

	name := fmt.Sprintf("unreachable-%d", time.Now().UnixNano())
	start := time.Now()
	_, err = r.GetService(context.Background(), name)
	if took := time.Since(start); err == nil || took > etcd.DefaultReadTimeout+3*time.Second {
		t.Fatalf("GetService with etcd down: %v after %v", err, took)
	}
	for _, want := range []string{srv.Endpoint(), "connection refused"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("GetService error %q does not say %q", err, want)
		}
	}

	reg := &resolver.Service{Name: name, Nodes: []resolver.Node{{ID: "n1", Address: "127.0.0.1:1"}}}
	rctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	err = r.Register(rctx, reg)
	cancel()
	if err == nil || !strings.Contains(err.Error(), srv.Endpoint()) || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("Register with etcd down = %v, want the address and the cause", err)
	}

	b := resolver.NewBuilder(r, resolver.WithLogger(logger), resolver.WithBackoff(50*time.Millisecond, 200*time.Millisecond))
	cc, err := grpc.NewClient("etcd:///"+name, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithResolvers(b))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	gc := pb.NewGreeterClient(cc)
	start = time.Now()
	_, err = gc.Hello(ctx(t), &pb.Request{}) // no wait-for-ready: fail fast
	took := time.Since(start)
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), srv.Endpoint()) || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("call with etcd down = %v, want Unavailable naming etcd's address and the cause", err)
	}
	if took > 10*time.Second {
		t.Fatalf("the call took %v to fail", took)
	}
	t.Logf("call failed after %v: %v", took, err)
	if n := strings.Count(logs.String(), "registry error, retrying"); n > 1 {
		t.Errorf("the outage was logged at warn level %d times, want once:\n%s", n, logs.String())
	}

	// etcd comes back; a node registers; calls succeed without a new client.
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	addr, _ := greeter(t, "back")
	reg.Nodes[0].Address, reg.Nodes[0].ID = addr, "back"
	if err := r.Register(ctx(t), reg); err != nil {
		t.Fatal(err)
	}
	defer r.Deregister(context.Background(), reg)
	rsp, err := gc.Hello(ctx(t), &pb.Request{}, grpc.WaitForReady(true))
	if err != nil || rsp.GetNode() != "back" {
		t.Fatalf("call after etcd came back: %v, %v", rsp, err)
	}
}
