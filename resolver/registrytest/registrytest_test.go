package registrytest_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/microgrpc/microgrpc/resolver"
	"github.com/microgrpc/microgrpc/resolver/memory"
	"github.com/microgrpc/microgrpc/resolver/registrytest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// childEnv makes the test binary run the kit on a broken registry instead
// of checking that it fails.
const childEnv = "REGISTRYTEST_BROKEN_CHILD"

// brokenCases are registries that each break one rule of the contract,
// with the subtest of the kit that must catch it. They wrap the memory
// registry, which keeps the whole contract (its own tests run the kit).
var brokenCases = []struct {
	name    string
	subtest string
	reg     func() resolver.Registry
	opts    []registrytest.Option
}{
	{"NotFoundNotWrapped", "NotFound", func() resolver.Registry { return unwrappedNotFound{memory.NewRegistry()} }, nil},
	{"DropsHealthService", "RoundTrip", func() resolver.Registry { return dropsHealthService{memory.NewRegistry()} }, nil},
	{"SharesResults", "RoundTrip", func() resolver.Registry { return &sharesResults{Registry: memory.NewRegistry()} }, nil},
	{"AcceptsInvalid", "Invalid", func() resolver.Registry { return acceptsInvalid{memory.NewRegistry()} }, nil},
	{"IgnoresTTL", "TTL", func() resolver.Registry { return ignoresTTL{memory.NewRegistry()} },
		[]registrytest.Option{registrytest.WithTTL(200 * time.Millisecond), registrytest.WithTimeout(3 * time.Second)}},
	{"UpdateAsCreate", "Watch", func() resolver.Registry { return updateAsCreate{memory.NewRegistry()} }, nil},
	{"WatchesEveryService", "Watch", func() resolver.Registry { return watchesAll{memory.NewRegistry()} }, nil},
	{"StopDoesNotStop", "WatchStop", func() resolver.Registry { return stopDoesNotStop{memory.NewRegistry()} },
		[]registrytest.Option{registrytest.WithTimeout(time.Second)}},
}

// The kit fails each broken registry, in the subtest meant to catch it.
// Each runs in a child process, since a failing subtest fails its parent.
func TestBroken(t *testing.T) {
	if os.Getenv(childEnv) != "" {
		for _, c := range brokenCases {
			t.Run(c.name, func(t *testing.T) {
				registrytest.Run(t, func(*testing.T) resolver.Registry { return c.reg() }, c.opts...)
			})
		}
		return
	}
	for _, c := range brokenCases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, os.Args[0], "-test.v", "-test.run=^TestBroken$/^"+c.name+"$/^"+c.subtest+"$")
			cmd.Env = append(os.Environ(), childEnv+"=1")
			out, err := cmd.CombinedOutput()
			var exit *exec.ExitError
			if !errors.As(err, &exit) {
				t.Fatalf("the kit passed a registry that breaks the contract (err %v):\n%s", err, out)
			}
			if want := "--- FAIL: TestBroken/" + c.name + "/" + c.subtest + " "; !strings.Contains(string(out), want) {
				t.Fatalf("output lacks %q:\n%s", want, out)
			}
		})
	}
}

// unwrappedNotFound reports a missing service with an error of its own.
type unwrappedNotFound struct{ resolver.Registry }

func (r unwrappedNotFound) GetService(ctx context.Context, name string) ([]*resolver.Service, error) {
	svcs, err := r.Registry.GetService(ctx, name)
	if errors.Is(err, resolver.ErrNotFound) {
		return nil, errors.New("no such service")
	}
	return svcs, err
}

// dropsHealthService forgets a field.
type dropsHealthService struct{ resolver.Registry }

func (r dropsHealthService) Register(ctx context.Context, s *resolver.Service, opts ...resolver.RegisterOption) error {
	c := s.Clone()
	if c != nil {
		for i := range c.Nodes {
			c.Nodes[i].HealthService = ""
		}
	}
	return r.Registry.Register(ctx, c, opts...)
}

// sharesResults returns the same services to every caller, so one
// caller's changes show to the next.
type sharesResults struct {
	resolver.Registry
	mu    sync.Mutex
	cache map[string][]*resolver.Service
}

func (r *sharesResults) GetService(ctx context.Context, name string) ([]*resolver.Service, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if svcs, ok := r.cache[name]; ok {
		return svcs, nil
	}
	svcs, err := r.Registry.GetService(ctx, name)
	if err == nil {
		if r.cache == nil {
			r.cache = map[string][]*resolver.Service{}
		}
		r.cache[name] = svcs
	}
	return svcs, err
}

// acceptsInvalid says yes to services it cannot register.
type acceptsInvalid struct{ resolver.Registry }

func (r acceptsInvalid) Register(ctx context.Context, s *resolver.Service, opts ...resolver.RegisterOption) error {
	if s.Validate() != nil {
		return nil
	}
	return r.Registry.Register(ctx, s, opts...)
}

// ignoresTTL registers everything for ever.
type ignoresTTL struct{ resolver.Registry }

func (r ignoresTTL) Register(ctx context.Context, s *resolver.Service, _ ...resolver.RegisterOption) error {
	return r.Registry.Register(ctx, s)
}

// updateAsCreate reports updates as creations.
type updateAsCreate struct{ resolver.Registry }

func (r updateAsCreate) Watch(ctx context.Context, opts ...resolver.WatchOption) (resolver.Watcher, error) {
	w, err := r.Registry.Watch(ctx, opts...)
	return createWatcher{w}, err
}

type createWatcher struct{ resolver.Watcher }

func (w createWatcher) Next() (*resolver.Event, error) {
	ev, err := w.Watcher.Next()
	if ev != nil && ev.Action == resolver.Update {
		ev.Action = resolver.Create
	}
	return ev, err
}

// watchesAll ignores WatchService.
type watchesAll struct{ resolver.Registry }

func (r watchesAll) Watch(ctx context.Context, _ ...resolver.WatchOption) (resolver.Watcher, error) {
	return r.Registry.Watch(ctx)
}

// stopDoesNotStop returns watchers whose Stop leaves Next waiting.
type stopDoesNotStop struct{ resolver.Registry }

func (r stopDoesNotStop) Watch(ctx context.Context, opts ...resolver.WatchOption) (resolver.Watcher, error) {
	// Not ctx: the watcher must outlive its context's end too.
	w, err := r.Registry.Watch(context.WithoutCancel(ctx), opts...)
	return stuckWatcher{w}, err
}

type stuckWatcher struct{ resolver.Watcher }

func (stuckWatcher) Stop() {}
