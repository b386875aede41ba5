package resolver_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	grpcresolver "google.golang.org/grpc/resolver"
	"google.golang.org/grpc/serviceconfig"
	"google.golang.org/grpc/status"

	"github.com/microgrpc/microgrpc/resolver"
	"github.com/microgrpc/microgrpc/resolver/memory"
)

const (
	defaultTestTimeout      = 10 * time.Second
	defaultTestShortTimeout = 50 * time.Millisecond
)

// fakeCC records what the resolver pushes.
type fakeCC struct {
	grpcresolver.ClientConn
	states chan grpcresolver.State
	errs   chan error
}

func newFakeCC() *fakeCC {
	return &fakeCC{states: make(chan grpcresolver.State, 100), errs: make(chan error, 100)}
}

func (f *fakeCC) UpdateState(s grpcresolver.State) error { f.states <- s; return nil }
func (f *fakeCC) ReportError(err error)                  { f.errs <- err }
func (f *fakeCC) ParseServiceConfig(string) *serviceconfig.ParseResult {
	return &serviceconfig.ParseResult{}
}

func (f *fakeCC) nextState(t *testing.T) grpcresolver.State {
	t.Helper()
	select {
	case s := <-f.states:
		return s
	case err := <-f.errs:
		t.Fatalf("got error %v, want a state", err)
	case <-time.After(defaultTestTimeout):
		t.Fatal("no state pushed")
	}
	return grpcresolver.State{}
}

func (f *fakeCC) nextError(t *testing.T) error {
	t.Helper()
	select {
	case s := <-f.states:
		if len(s.Endpoints) > 0 {
			t.Fatalf("got state %v, want an error", ids(s))
		}
		return f.nextError(t) // an empty state precedes the error
	case err := <-f.errs:
		return err
	case <-time.After(defaultTestTimeout):
		t.Fatal("no error reported")
	}
	return nil
}

func (f *fakeCC) quiet(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case s := <-f.states:
		t.Fatalf("unexpected state %v", ids(s))
	case err := <-f.errs:
		t.Fatalf("unexpected error %v", err)
	case <-time.After(d):
	}
}

func ids(s grpcresolver.State) []string {
	var out []string
	for _, ep := range s.Endpoints {
		n := resolver.NodeFromEndpoint(ep)
		out = append(out, n.ID+"@"+ep.Addresses[0].Addr)
	}
	return out
}

func build(t *testing.T, reg resolver.Registry, name string, opts ...resolver.BuilderOption) *fakeCC {
	t.Helper()
	b := resolver.NewBuilder(reg, opts...)
	cc := newFakeCC()
	r, err := b.Build(grpcresolver.Target{URL: *mustURL(t, b.Scheme()+":///"+name)}, cc, grpcresolver.BuildOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	return cc
}

func node(name, id, addr, version string) *resolver.Service {
	return &resolver.Service{Name: name, Version: version, Nodes: []resolver.Node{{ID: id, Address: addr, Metadata: map[string]string{"id": id}}}}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), defaultTestTimeout)
	t.Cleanup(cancel)
	return c
}

func TestResolverFollowsRegistry(t *testing.T) {
	reg := memory.NewRegistry()
	if err := reg.Register(ctx(t), node("greeter", "a", "127.0.0.1:1", "v1")); err != nil {
		t.Fatal(err)
	}
	cc := build(t, reg, "greeter")
	s := cc.nextState(t)
	if got := strings.Join(ids(s), ","); got != "a@127.0.0.1:1" {
		t.Fatalf("initial state %s", got)
	}
	if len(s.Addresses) != 1 || s.Addresses[0].Addr != "127.0.0.1:1" || resolver.NodeFromAddress(s.Addresses[0]).ID != "a" {
		t.Fatalf("Addresses not filled: %+v", s.Addresses)
	}
	n := resolver.NodeFromEndpoint(s.Endpoints[0])
	if n.Version != "v1" || n.Service != "greeter" || n.Metadata["id"] != "a" {
		t.Fatalf("node info %+v", n)
	}

	if err := reg.Register(ctx(t), node("greeter", "b", "127.0.0.1:2", "v2")); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(ids(cc.nextState(t)), ","); got != "a@127.0.0.1:1,b@127.0.0.1:2" {
		t.Fatalf("after add: %s", got)
	}
	// Another service's change is not pushed.
	if err := reg.Register(ctx(t), node("other", "c", "127.0.0.1:3", "")); err != nil {
		t.Fatal(err)
	}
	cc.quiet(t, 100*time.Millisecond)
	if err := reg.Deregister(ctx(t), node("greeter", "a", "127.0.0.1:1", "v1")); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(ids(cc.nextState(t)), ","); got != "b@127.0.0.1:2" {
		t.Fatalf("after delete: %s", got)
	}
}

func TestResolverCoalescesBursts(t *testing.T) {
	reg := memory.NewRegistry()
	if err := reg.Register(ctx(t), node("greeter", "seed", "127.0.0.1:1", "")); err != nil {
		t.Fatal(err)
	}
	cc := build(t, reg, "greeter", resolver.WithCoalesceWindow(200*time.Millisecond))
	cc.nextState(t)
	for i := range 50 {
		if err := reg.Register(ctx(t), node("greeter", fmt.Sprint("n", i), fmt.Sprint("127.0.0.1:", 1000+i), "")); err != nil {
			t.Fatal(err)
		}
	}
	s := cc.nextState(t)
	if len(s.Endpoints) != 51 {
		t.Fatalf("one update with %d endpoints, want all 51 at once", len(s.Endpoints))
	}
	cc.quiet(t, 300*time.Millisecond)
}

func TestResolverKeepsLastListForGracePeriodWhenEmpty(t *testing.T) {
	reg := memory.NewRegistry()
	if err := reg.Register(ctx(t), node("greeter", "a", "127.0.0.1:1", "")); err != nil {
		t.Fatal(err)
	}
	cc := build(t, reg, "greeter", resolver.WithGracePeriod(300*time.Millisecond), resolver.WithCoalesceWindow(0))
	cc.nextState(t)
	start := time.Now()
	if err := reg.Deregister(ctx(t), node("greeter", "a", "", "")); err != nil {
		t.Fatal(err)
	}
	err := cc.nextError(t)
	if waited := time.Since(start); waited < 250*time.Millisecond {
		t.Fatalf("error after %v, want the list kept for the grace period", waited)
	}
	for _, want := range []string{`"greeter"`, "memory", "no nodes"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	// A node that comes back is pushed again.
	if err := reg.Register(ctx(t), node("greeter", "b", "127.0.0.1:2", "")); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(ids(cc.nextState(t)), ","); got != "b@127.0.0.1:2" {
		t.Fatalf("after recovery: %s", got)
	}
}

func TestResolverGraceCancelledWhenNodesReturn(t *testing.T) {
	reg := memory.NewRegistry()
	if err := reg.Register(ctx(t), node("greeter", "a", "127.0.0.1:1", "")); err != nil {
		t.Fatal(err)
	}
	cc := build(t, reg, "greeter", resolver.WithGracePeriod(200*time.Millisecond), resolver.WithCoalesceWindow(0))
	cc.nextState(t)
	reg.Deregister(ctx(t), node("greeter", "a", "", ""))
	reg.Register(ctx(t), node("greeter", "a", "127.0.0.1:1", ""))
	// Seen one by one, the return is pushed again; seen together, the two
	// changes cancel out and nothing is. Either way no error follows the
	// grace period, and any state holds the node.
	deadline := time.After(400 * time.Millisecond)
	for {
		select {
		case s := <-cc.states:
			if got := strings.Join(ids(s), ","); got != "a@127.0.0.1:1" {
				t.Fatalf("state %s, want the returned node", got)
			}
		case err := <-cc.errs:
			t.Fatalf("error after the node returned: %v", err)
		case <-deadline:
			return
		}
	}
}

func TestResolverReportsUnknownServiceAtOnce(t *testing.T) {
	cc := build(t, memory.NewRegistry(), "nobody")
	if err := cc.nextError(t); !strings.Contains(err.Error(), `"nobody"`) {
		t.Fatalf("error %v does not name the service", err)
	}
}

func TestResolverBuildRejectsBadTarget(t *testing.T) {
	b := resolver.NewBuilder(memory.NewRegistry())
	for _, target := range []string{"memory:///", "memory:///a/b"} {
		_, err := b.Build(grpcresolver.Target{URL: *mustURL(t, target)}, newFakeCC(), grpcresolver.BuildOptions{})
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("Build(%q) = %v, want InvalidArgument", target, err)
		}
	}
}

// flakyRegistry wraps a registry and fails Watch, and breaks watchers, on
// demand.
type flakyRegistry struct {
	resolver.Registry
	failing  atomic.Bool
	watches  atomic.Int32
	mu       sync.Mutex
	watchers []resolver.Watcher
}

var errDown = errors.New("backend down")

func (f *flakyRegistry) Watch(ctx context.Context, opts ...resolver.WatchOption) (resolver.Watcher, error) {
	f.watches.Add(1)
	if f.failing.Load() {
		return nil, errDown
	}
	w, err := f.Registry.Watch(ctx, opts...)
	if err == nil {
		f.mu.Lock()
		f.watchers = append(f.watchers, w)
		f.mu.Unlock()
	}
	return w, err
}

// breakWatches makes the registry fail and ends the live watchers.
func (f *flakyRegistry) breakWatches() {
	f.failing.Store(true)
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, w := range f.watchers {
		w.Stop()
	}
	f.watchers = nil
}

func TestResolverRetriesAfterRegistryError(t *testing.T) {
	reg := &flakyRegistry{Registry: memory.NewRegistry()}
	reg.Register(ctx(t), node("greeter", "a", "127.0.0.1:1", ""))
	cc := build(t, reg, "greeter", resolver.WithGracePeriod(200*time.Millisecond),
		resolver.WithBackoff(10*time.Millisecond, 40*time.Millisecond))
	cc.nextState(t)
	reg.breakWatches()
	// The last list is kept for the grace period, then the error is
	// reported, saying the old nodes are still in use.
	err := cc.nextError(t)
	if !strings.Contains(err.Error(), "backend down") || !strings.Contains(err.Error(), "still using the 1 nodes") {
		t.Fatalf("error %q", err)
	}
	// No ResolveNow is needed: the resolver retries on its own.
	before := reg.watches.Load()
	time.Sleep(200 * time.Millisecond)
	if retries := reg.watches.Load() - before; retries < 2 {
		t.Fatalf("%d retries in 200ms, want the resolver to keep retrying", retries)
	}
	reg.Register(ctx(t), node("greeter", "b", "127.0.0.1:2", ""))
	reg.failing.Store(false)
	for {
		select {
		case s := <-cc.states:
			if strings.Join(ids(s), ",") == "a@127.0.0.1:1,b@127.0.0.1:2" {
				return
			}
		case <-cc.errs: // still failing before the retry that succeeds
		case <-time.After(defaultTestTimeout):
			t.Fatal("resolver did not recover")
		}
	}
}

func TestResolverWaitsForFirstNodesBeforeReporting(t *testing.T) {
	reg := memory.NewRegistry()
	cc := build(t, reg, "late", resolver.WithInitialWait(2*time.Second), resolver.WithCoalesceWindow(0))
	cc.quiet(t, 100*time.Millisecond) // no error straight away
	if err := reg.Register(ctx(t), node("late", "a", "127.0.0.1:1", "")); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(ids(cc.nextState(t)), ","); got != "a@127.0.0.1:1" {
		t.Fatalf("state %s", got)
	}
	cc.quiet(t, 2200*time.Millisecond) // and no stale error later

	start := time.Now()
	cc2 := build(t, reg, "never", resolver.WithInitialWait(200*time.Millisecond))
	cc2.nextError(t)
	if d := time.Since(start); d < 150*time.Millisecond {
		t.Fatalf("reported after %v, want the initial wait first", d)
	}
}
