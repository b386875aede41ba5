package etcd_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	etcdnaming "go.etcd.io/etcd/client/v3/naming/resolver"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	grpcresolver "google.golang.org/grpc/resolver"
	"google.golang.org/grpc/serviceconfig"

	"github.com/microgrpc/microgrpc/internal/etcdtest"
	"github.com/microgrpc/microgrpc/internal/greetertest"
	pb "github.com/microgrpc/microgrpc/proto/greeter"
	"github.com/microgrpc/microgrpc/resolver"
	"github.com/microgrpc/microgrpc/resolver/etcd"
)

const defaultTestTimeout = 20 * time.Second

var quiet = slog.New(slog.NewTextHandler(testWriter{}, &slog.HandlerOptions{Level: slog.LevelError}))

type testWriter struct{}

func (testWriter) Write(b []byte) (int, error) { return len(b), nil }

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), defaultTestTimeout)
	t.Cleanup(cancel)
	return c
}

// prefixes holds each test's etcd prefix. A test's keys live under a
// prefix of its own on each run, and are deleted when it ends: keys a
// previous run (go test -count=N) left on a live lease must not be seen.
var (
	prefixes  sync.Map // *testing.T -> string
	prefixSeq atomic.Int64
)

func prefix(t *testing.T) string {
	if p, ok := prefixes.Load(t); ok {
		return p.(string)
	}
	p := fmt.Sprintf("/test/%s/run-%d-%d", strings.ReplaceAll(t.Name(), "/", "_"), time.Now().UnixNano(), prefixSeq.Add(1))
	prefixes.Store(t, p)
	t.Cleanup(func() {
		prefixes.Delete(t)
		c, err := clientv3.New(clientv3.Config{Endpoints: []string{server.Endpoint()}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
		if err != nil {
			return
		}
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c.Delete(ctx, p+"/", clientv3.WithPrefix())
	})
	return p
}

func newRegistry(t *testing.T, endpoint string, opts ...etcd.Option) *etcd.Registry {
	t.Helper()
	all := append([]etcd.Option{etcd.WithEndpoints(endpoint), etcd.WithPrefix(prefix(t)), etcd.WithLogger(quiet)}, opts...)
	r, err := etcd.NewRegistry(all...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func client(t *testing.T, endpoint string) *clientv3.Client {
	t.Helper()
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func node(id, addr string) *resolver.Service {
	return &resolver.Service{Name: "greeter", Version: "v1", Metadata: map[string]string{"team": "x"},
		Endpoints: []resolver.Endpoint{{Name: "/greeter.Greeter/Hello"}},
		Nodes:     []resolver.Node{{ID: id, Address: addr, Metadata: map[string]string{"zone": "a"}, HealthService: "greeter"}}}
}

// greeter starts a greeter server reporting id and returns its address.
func greeter(t *testing.T, id string) (string, *grpc.Server) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	pb.RegisterGreeterServer(s, &greetertest.Server{Node: id})
	go s.Serve(lis)
	t.Cleanup(s.Stop)
	return lis.Addr().String(), s
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(defaultTestTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func nodeIDs(t *testing.T, r resolver.Registry, name string) []string {
	t.Helper()
	svcs, err := r.GetService(ctx(t), name)
	if errors.Is(err, resolver.ErrNotFound) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, s := range svcs {
		for _, n := range s.Nodes {
			ids = append(ids, n.ID)
		}
	}
	return ids
}

// Each node is one key, <prefix>/<service>/<node id>, on a lease, holding
// etcd's endpoints JSON: the layout the package documents and etcd's own
// naming resolver reads (the kit checks the rest of the contract).
func TestKeyLayout(t *testing.T) {
	r := newRegistry(t, server.Endpoint())
	if err := r.Register(ctx(t), node("b", "127.0.0.1:2"), resolver.WithTTL(5*time.Second)); err != nil {
		t.Fatal(err)
	}
	resp, err := client(t, server.Endpoint()).Get(ctx(t), prefix(t)+"/greeter/b")
	if err != nil || len(resp.Kvs) != 1 || resp.Kvs[0].Lease == 0 {
		t.Fatalf("key %s/greeter/b: %v %v", prefix(t), resp, err)
	}
	if v := string(resp.Kvs[0].Value); !strings.HasPrefix(v, `{"Op":0,"Addr":"127.0.0.1:2","Metadata":{`) {
		t.Fatalf("value %s, want etcd's endpoints update JSON", v)
	}
}

func TestWatchEventsAndGarbage(t *testing.T) {
	r := newRegistry(t, server.Endpoint())
	w, err := r.Watch(ctx(t), resolver.WatchService("greeter"))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	c := client(t, server.Endpoint())
	r.Register(ctx(t), node("a", "127.0.0.1:1"))
	// Garbage under the prefix is skipped, and the watch goes on.
	c.Put(ctx(t), prefix(t)+"/greeter/junk", "not json")
	c.Put(ctx(t), prefix(t)+"/greeter/half", `{"Op":0,"Addr":""}`)
	changed := node("a", "127.0.0.1:1")
	changed.Nodes[0].Metadata["zone"] = "b"
	r.Register(ctx(t), changed)
	r.Deregister(ctx(t), node("a", ""))
	want := []string{"create a zone=a", "update a zone=b", "delete a zone=b"}
	for _, wnt := range want {
		ev, err := w.Next()
		if err != nil {
			t.Fatal(err)
		}
		n := ev.Service.Nodes[0]
		if got := fmt.Sprintf("%s %s zone=%s", ev.Action, n.ID, n.Metadata["zone"]); got != wnt {
			t.Fatalf("event %q, want %q", got, wnt)
		}
	}
	if got := nodeIDs(t, r, "greeter"); len(got) != 0 {
		t.Fatalf("garbage decoded as nodes: %v", got)
	}
}

func TestDeletedKeyIsPutBack(t *testing.T) {
	r := newRegistry(t, server.Endpoint())
	if err := r.Register(ctx(t), node("a", "127.0.0.1:1"), resolver.WithTTL(5*time.Second)); err != nil {
		t.Fatal(err)
	}
	c := client(t, server.Endpoint())
	if _, err := c.Delete(ctx(t), prefix(t)+"/greeter/a"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the deleted key to be put back", func() bool { return fmt.Sprint(nodeIDs(t, r, "greeter")) == "[a]" })
	// And a revoked lease is replaced.
	resp, _ := c.Get(ctx(t), prefix(t)+"/greeter/a")
	if _, err := c.Revoke(ctx(t), clientv3.LeaseID(resp.Kvs[0].Lease)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the node to come back on a new lease", func() bool {
		resp, err := c.Get(ctx(t), prefix(t)+"/greeter/a")
		return err == nil && len(resp.Kvs) == 1 && resp.Kvs[0].Lease != 0
	})
}

// deletingKV deletes a key right after the registry first puts it, before
// Register returns and so before the keeper can watch it.
type deletingKV struct {
	clientv3.KV
	key     string
	once    sync.Once
	deleted atomic.Bool
}

func (d *deletingKV) Put(ctx context.Context, key, val string, opts ...clientv3.OpOption) (*clientv3.PutResponse, error) {
	resp, err := d.KV.Put(ctx, key, val, opts...)
	if err == nil && key == d.key {
		d.once.Do(func() {
			if _, err = d.KV.Delete(ctx, key); err == nil {
				d.deleted.Store(true)
			}
		})
	}
	return resp, err
}

// A key deleted between the registry's put and the start of its watch is
// put back too: the watch starts at the put's revision, not at "now",
// which missed the delete and left the node unregistered for good.
func TestKeyDeletedBeforeTheWatchIsPutBack(t *testing.T) {
	kv := &deletingKV{key: prefix(t) + "/greeter/a"}
	r := newRegistry(t, server.Endpoint(), etcd.WithKVWrapper(func(inner clientv3.KV) clientv3.KV { kv.KV = inner; return kv }))
	if err := r.Register(ctx(t), node("a", "127.0.0.1:1"), resolver.WithTTL(5*time.Second)); err != nil {
		t.Fatal(err)
	}
	if !kv.deleted.Load() {
		t.Fatal("the first put was not deleted")
	}
	eventually(t, "the key deleted before the watch to be put back", func() bool { return fmt.Sprint(nodeIDs(t, r, "greeter")) == "[a]" })
}

func dial(t *testing.T, b grpcresolver.Builder, target string) pb.GreeterClient {
	t.Helper()
	cc, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithResolvers(b),
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"round_robin":{}}]}`))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return pb.NewGreeterClient(cc)
}

func TestThreeNodesResolvedAndCalled(t *testing.T) {
	r := newRegistry(t, server.Endpoint())
	for _, id := range []string{"a", "b", "c"} {
		addr, _ := greeter(t, id)
		if err := r.Register(ctx(t), node(id, addr)); err != nil {
			t.Fatal(err)
		}
	}
	c := dial(t, etcd.NewBuilder(r), "etcd:///greeter")
	seen := map[string]bool{}
	for range 30 {
		rsp, err := c.Hello(ctx(t), &pb.Request{}, grpc.WaitForReady(true))
		if err != nil {
			t.Fatal(err)
		}
		seen[rsp.GetNode()] = true
	}
	if len(seen) != 3 {
		t.Fatalf("calls reached %v, want all three nodes", seen)
	}
}

// grpc-go with etcd's own naming resolver reads our keys unchanged.
func TestEtcdNamingResolverReadsOurNodes(t *testing.T) {
	r := newRegistry(t, server.Endpoint())
	addr, _ := greeter(t, "a")
	if err := r.Register(ctx(t), node("a", addr)); err != nil {
		t.Fatal(err)
	}
	b, err := etcdnaming.NewBuilder(client(t, server.Endpoint()))
	if err != nil {
		t.Fatal(err)
	}
	// etcd's resolver drops one leading slash of the path: hence "////".
	c := dial(t, b, "etcd:///"+prefix(t)+"/greeter")
	rsp, err := c.Hello(ctx(t), &pb.Request{Name: "etcd"}, grpc.WaitForReady(true))
	if err != nil || rsp.GetNode() != "a" {
		t.Fatalf("call through etcd's naming resolver: %v, %v", rsp, err)
	}
}

// The global "etcd" scheme, as a program that never builds a registry uses
// it; the endpoint comes from the target's authority.
func TestGlobalScheme(t *testing.T) {
	r, err := etcd.NewRegistry(etcd.WithEndpoints(server.Endpoint()), etcd.WithLogger(quiet)) // default prefix
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	addr, _ := greeter(t, "global")
	svc := node("global", addr)
	svc.Name = "greeter-global-scheme"
	if err := r.Register(ctx(t), svc); err != nil {
		t.Fatal(err)
	}
	defer r.Deregister(context.Background(), svc)
	cc, err := grpc.NewClient("etcd://"+server.Endpoint()+"/greeter-global-scheme", grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	rsp, err := pb.NewGreeterClient(cc).Hello(ctx(t), &pb.Request{}, grpc.WaitForReady(true))
	if err != nil || rsp.GetNode() != "global" {
		t.Fatalf("etcd:// scheme call: %v, %v", rsp, err)
	}
}

func TestRestartRecoversRegistrationsAndKeepsClientsCalling(t *testing.T) {
	srv, err := etcdtest.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	var logs lockedBuffer
	reg := newRegistry(t, srv.Endpoint(), etcd.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	addr, _ := greeter(t, "a")
	if err := reg.Register(ctx(t), node("a", addr), resolver.WithTTL(time.Second)); err != nil {
		t.Fatal(err)
	}
	watcherReg := newRegistry(t, srv.Endpoint())
	c := dial(t, etcd.NewBuilder(watcherReg, resolver.WithGracePeriod(time.Minute)), "etcd:///greeter")
	if _, err := c.Hello(ctx(t), &pb.Request{}, grpc.WaitForReady(true)); err != nil {
		t.Fatal(err)
	}

	var failed atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			cctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			if _, err := c.Hello(cctx, &pb.Request{}); err != nil {
				failed.Add(1)
			}
			cancel()
			time.Sleep(10 * time.Millisecond)
		}
	}()
	srv.Stop()
	time.Sleep(3 * time.Second) // longer than the TTL
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	// The registration comes back by itself.
	eventually(t, "the registration to come back", func() bool {
		cctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		svcs, err := reg.GetService(cctx, "greeter")
		return err == nil && len(svcs[0].Nodes) == 1
	})
	close(stop)
	wg.Wait()
	if n := failed.Load(); n != 0 {
		t.Fatalf("%d calls failed while etcd was down; the client should keep the nodes it knew", n)
	}
	// The outage and the recovery are both in the log.
	eventually(t, "the recovery to be logged", func() bool { return strings.Contains(logs.String(), "registration restored") })
	if !strings.Contains(logs.String(), "registration lost") {
		t.Errorf("the lost registration was not logged:\n%s", logs.String())
	}
}

// countingKV counts Get requests.
type countingKV struct {
	clientv3.KV
	gets atomic.Int64
}

func (k *countingKV) Get(ctx context.Context, key string, opts ...clientv3.OpOption) (*clientv3.GetResponse, error) {
	k.gets.Add(1)
	return k.KV.Get(ctx, key, opts...)
}

type countingCC struct {
	grpcresolver.ClientConn
	mu     sync.Mutex
	states []int
}

func (c *countingCC) UpdateState(s grpcresolver.State) error {
	c.mu.Lock()
	c.states = append(c.states, len(s.Endpoints))
	c.mu.Unlock()
	return nil
}
func (c *countingCC) ReportError(error) {}
func (c *countingCC) ParseServiceConfig(string) *serviceconfig.ParseResult {
	return &serviceconfig.ParseResult{}
}
func (c *countingCC) updates() []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]int(nil), c.states...)
}

func TestThousandNodesOneChangeOneUpdate(t *testing.T) {
	const n = 1000
	c := client(t, server.Endpoint())
	lease, err := c.Grant(ctx(t), 60)
	if err != nil {
		t.Fatal(err)
	}
	// Write the nodes directly, many per transaction, as 1000 registrations
	// would.
	for i := 0; i < n; i += 100 {
		var ops []clientv3.Op
		for j := i; j < i+100; j++ {
			id := fmt.Sprint("n", j)
			ops = append(ops, clientv3.OpPut(prefix(t)+"/big/"+id,
				fmt.Sprintf(`{"Op":0,"Addr":"127.0.0.1:%d","Metadata":{"id":%q,"service":"big"}}`, 10000+j, id), clientv3.WithLease(lease.ID)))
		}
		if _, err := c.Txn(ctx(t)).Then(ops...).Commit(); err != nil {
			t.Fatal(err)
		}
	}
	kv := &countingKV{}
	r := newRegistry(t, server.Endpoint(), etcd.WithKVWrapper(func(inner clientv3.KV) clientv3.KV { kv.KV = inner; return kv }))
	cc := &countingCC{}
	u, _ := url.Parse("etcd:///big")
	res, err := etcd.NewBuilder(r).Build(grpcresolver.Target{URL: *u}, cc, grpcresolver.BuildOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer res.Close()
	eventually(t, "the initial 1000 nodes", func() bool { s := cc.updates(); return len(s) == 1 && s[0] == n })
	gets := kv.gets.Load()
	if gets != 1 {
		t.Fatalf("%d reads for the initial list, want 1: the list and the watch share one read", gets)
	}

	c.Put(ctx(t), prefix(t)+"/big/extra", `{"Op":0,"Addr":"127.0.0.1:9","Metadata":{"id":"extra","service":"big"}}`, clientv3.WithLease(lease.ID))
	eventually(t, "one update for the added node", func() bool { s := cc.updates(); return len(s) == 2 && s[1] == n+1 })
	c.Delete(ctx(t), prefix(t)+"/big/n7")
	eventually(t, "one update for the removed node", func() bool { s := cc.updates(); return len(s) == 3 && s[2] == n })
	time.Sleep(200 * time.Millisecond)
	if s := cc.updates(); len(s) != 3 {
		t.Fatalf("updates %v, want exactly one per change", s)
	}
	if extra := kv.gets.Load() - gets; extra != 0 {
		t.Fatalf("%d extra reads after the initial list: the resolver re-read the nodes on a change", extra)
	}
}
