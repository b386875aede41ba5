package registrytest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/microgrpc/microgrpc/resolver"
)

// Run runs the conformance tests on the registries newRegistry makes, one
// subtest per part of the contract (see the package documentation). opts
// declare what the registry can do; without them the strictest behaviour
// is expected.
func Run(t *testing.T, newRegistry func(t *testing.T) resolver.Registry, opts ...Option) {
	t.Helper()
	cfg := newConfig(opts)
	tests := []struct {
		name string
		run  func(*suite)
	}{
		{"RoundTrip", testRoundTrip},
		{"NodesAndVersions", testNodesAndVersions},
		{"NotFound", testNotFound},
		{"Invalid", testInvalid},
		{"DeregisterUnknown", testDeregisterUnknown},
		{"Refresh", testRefresh},
		{"TTL", testTTL},
		{"ListServices", testListServices},
		{"Watch", testWatch},
		{"WatchStop", testWatchStop},
		{"WatchContext", testWatchContext},
		{"Concurrent", testConcurrent},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.run(newSuite(t, cfg, newRegistry))
		})
	}
}

// suite is one subtest: its registry, its deadline, and what it registered
// (to deregister when it ends).
type suite struct {
	t           *testing.T
	cfg         config
	newRegistry func(*testing.T) resolver.Registry
	reg         resolver.Registry
	ctx         context.Context

	mu         sync.Mutex
	registered []registration
}

type registration struct {
	reg resolver.Registry
	svc *resolver.Service
}

func newSuite(t *testing.T, cfg config, newRegistry func(*testing.T) resolver.Registry) *suite {
	ctx, cancel := context.WithTimeout(context.Background(), cfg.timeout)
	t.Cleanup(cancel)
	s := &suite{t: t, cfg: cfg, newRegistry: newRegistry, ctx: ctx}
	s.reg = newRegistry(t)
	if s.reg == nil {
		t.Fatal("newRegistry returned nil")
	}
	// Registered after the registry's own cleanup, so it runs before the
	// registry is closed.
	t.Cleanup(s.deregisterAll)
	return s
}

// deregisterAll removes what the subtest registered, so that a registry
// shared by several subtests (or runs, with -count) starts clean. Errors
// are ignored: this is tidying up, and the registry may be gone already.
func (s *suite) deregisterAll() {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.timeout)
	defer cancel()
	s.mu.Lock()
	regs := s.registered
	s.registered = nil
	s.mu.Unlock()
	for _, r := range regs {
		r.reg.Deregister(ctx, r.svc)
	}
}

// runID tells this process's service names from those another process
// (or a crashed earlier run) left in a shared backend; seq tells apart the
// names of one process, across subtests and -count runs.
var (
	runID = strconv.FormatInt(time.Now().UnixNano()%(1<<30), 36)
	seq   atomic.Int64
)

// name returns a service name no other subtest uses.
func (s *suite) name(what string) string {
	return fmt.Sprintf("kit-%s-%s-%d", what, runID, seq.Add(1))
}

// service is a one-node service with every field set, so that a registry
// that drops or mixes up any of them is caught. port only makes addresses
// differ: nothing is ever dialled.
func service(name, version, id string, port int) *resolver.Service {
	return &resolver.Service{
		Name:     name,
		Version:  version,
		Metadata: map[string]string{"team": "kit", "release": version},
		Endpoints: []resolver.Endpoint{
			{Name: "/kit.Greeter/Hello", Metadata: map[string]string{"idempotent": "true"}},
			{Name: "/kit.Greeter/Chat", ClientStreaming: true, ServerStreaming: true, Metadata: map[string]string{"kind": "bidi"}},
			{Name: "/kit.Greeter/Upload", ClientStreaming: true},
			{Name: "/kit.Greeter/Watch", ServerStreaming: true},
		},
		Nodes: []resolver.Node{{
			ID:            id,
			Address:       "127.0.0.1:" + strconv.Itoa(port),
			Metadata:      map[string]string{"zone": "zone-a", "node": id},
			HealthService: name,
		}},
	}
}

// register registers svc on reg, failing the subtest on error, and
// remembers it for cleanup.
func (s *suite) register(reg resolver.Registry, svc *resolver.Service, opts ...resolver.RegisterOption) {
	s.t.Helper()
	s.track(reg, svc)
	if err := reg.Register(s.ctx, svc, opts...); err != nil {
		s.t.Fatalf("Register(%s): %v", short(svc), err)
	}
}

func (s *suite) track(reg resolver.Registry, svc *resolver.Service) {
	s.mu.Lock()
	s.registered = append(s.registered, registration{reg, svc.Clone()})
	s.mu.Unlock()
}

// untrack forgets what was registered through reg.
func (s *suite) untrack(reg resolver.Registry) {
	s.mu.Lock()
	s.registered = slices.DeleteFunc(s.registered, func(r registration) bool { return r.reg == reg })
	s.mu.Unlock()
}

func (s *suite) deregister(reg resolver.Registry, svc *resolver.Service) {
	s.t.Helper()
	if err := reg.Deregister(s.ctx, svc); err != nil {
		s.t.Fatalf("Deregister(%s): %v", short(svc), err)
	}
}

// visible checks a condition on what the registry reads back after a
// write: once, or, for an eventually consistent registry, until it holds
// or the subtest's deadline passes.
func (s *suite) visible(what string, check func() error) {
	s.t.Helper()
	if !s.cfg.eventual {
		if err := check(); err != nil {
			s.t.Fatalf("%s: %v", what, err)
		}
		return
	}
	s.poll(what, check)
}

// poll waits until check holds, failing the subtest at its deadline with
// check's last error.
func (s *suite) poll(what string, check func() error) {
	s.t.Helper()
	for {
		err := check()
		if err == nil {
			return
		}
		if !s.sleep(20 * time.Millisecond) {
			s.t.Fatalf("%s: still not so after %v: %v", what, s.cfg.timeout, err)
		}
	}
}

// sleep waits d, or until the subtest's deadline (then it returns false).
func (s *suite) sleep(d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-s.ctx.Done():
		return false
	}
}

// within runs f, failing the subtest if it does not return by the
// deadline (f is then left running: the registry is broken anyway).
func (s *suite) within(what string, f func()) {
	s.t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	select {
	case <-done:
	case <-s.ctx.Done():
		s.t.Fatalf("%s did not return by the subtest's deadline (%v)", what, s.cfg.timeout)
	}
}

// expect reports whether GetService(name) returns exactly the nodes of
// want, grouped by version, with all their data.
func (s *suite) expect(reg resolver.Registry, name string, want ...*resolver.Service) error {
	got, err := reg.GetService(s.ctx, name)
	if err != nil {
		return fmt.Errorf("GetService(%q): %w", name, err)
	}
	g, w := s.describeAll(got), s.describeAll(resolver.GroupByVersion(want))
	if g != w {
		return fmt.Errorf("GetService(%q) =\n\t%s\nwant\n\t%s", name, g, w)
	}
	return nil
}

// expectNotFound reports whether GetService(name) fails with ErrNotFound.
func (s *suite) expectNotFound(reg resolver.Registry, name string) error {
	got, err := reg.GetService(s.ctx, name)
	switch {
	case err == nil:
		return fmt.Errorf("GetService(%q) = %s, want an error wrapping resolver.ErrNotFound", name, s.describeAll(got))
	case !errors.Is(err, resolver.ErrNotFound):
		return fmt.Errorf("GetService(%q) error %q does not wrap resolver.ErrNotFound", name, err)
	}
	return nil
}

// short names a service and its nodes, for messages about a call.
func short(s *resolver.Service) string {
	if s == nil {
		return "nil"
	}
	ids := make([]string, len(s.Nodes))
	for i, n := range s.Nodes {
		ids[i] = n.ID
	}
	return fmt.Sprintf("service %q version %q nodes %q", s.Name, s.Version, ids)
}

// describe renders every field of s that the kit compares, nodes in id
// order, so that two services are equal when their descriptions are.
func describe(s *resolver.Service, noEndpointMetadata bool) string {
	if s == nil {
		return "<nil>"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "{name=%q version=%q metadata=%s endpoints=[", s.Name, s.Version, describeMap(s.Metadata))
	for i, e := range s.Endpoints {
		if i > 0 {
			b.WriteString(" ")
		}
		fmt.Fprintf(&b, "{%q client_streaming=%t server_streaming=%t", e.Name, e.ClientStreaming, e.ServerStreaming)
		if !noEndpointMetadata {
			fmt.Fprintf(&b, " metadata=%s", describeMap(e.Metadata))
		}
		b.WriteString("}")
	}
	b.WriteString("] nodes=[")
	nodes := slices.Clone(s.Nodes)
	resolver.SortNodes(nodes)
	for i, n := range nodes {
		if i > 0 {
			b.WriteString(" ")
		}
		fmt.Fprintf(&b, "{id=%q address=%q metadata=%s health_service=%q}", n.ID, n.Address, describeMap(n.Metadata), n.HealthService)
	}
	b.WriteString("]}")
	return b.String()
}

// describeMap renders a map in key order; nil and empty are the same, as
// no registry can be expected to tell them apart.
func describeMap(m map[string]string) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%q:%q", k, m[k]))
	}
	return "{" + strings.Join(parts, ",") + "}"
}

// describeAll renders services in name and version order: GetService
// promises one Service per version, not an order.
func (s *suite) describeAll(svcs []*resolver.Service) string {
	var parts []string
	for _, svc := range svcs {
		parts = append(parts, describe(svc, s.cfg.noEndpointMetadata))
	}
	slices.Sort(parts)
	if len(parts) == 0 {
		return "[]"
	}
	return strings.Join(parts, "\n\t")
}

// stream is a watcher read by a goroutine of its own, so that the subtest
// can wait for its next event under the deadline.
type stream struct {
	s    *suite
	what string
	ch   chan result
	// names, when set, limits the events next returns to these services;
	// others are skipped (a watch of every service also sees other
	// subtests' and other processes' services on a shared backend).
	names map[string]bool
}

type result struct {
	ev  *resolver.Event
	err error
}

// watch starts a watcher on reg; it is stopped, and its reader checked to
// have returned, when the subtest ends.
func (s *suite) watch(reg resolver.Registry, what string, opts ...resolver.WatchOption) *stream {
	s.t.Helper()
	w, err := reg.Watch(s.ctx, opts...)
	if err != nil {
		s.t.Fatalf("Watch (%s): %v", what, err)
	}
	// Buffered, so that the reader runs ahead of the subtest and tryNext
	// sees every event already delivered.
	st := &stream{s: s, what: what, ch: make(chan result, 1024)}
	stop, exited := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(exited)
		for {
			ev, err := w.Next()
			select {
			case st.ch <- result{ev, err}:
			case <-stop:
				return
			}
			if err != nil {
				return
			}
		}
	}()
	s.t.Cleanup(func() {
		w.Stop()
		close(stop)
		timer := time.NewTimer(s.cfg.timeout)
		defer timer.Stop()
		select {
		case <-exited:
		case <-timer.C:
			s.t.Errorf("watcher %s: Next did not return within %v of Stop", what, s.cfg.timeout)
		}
	})
	return st
}

// next returns the next event of interest, failing the subtest when the
// watcher fails or nothing comes before the deadline.
func (st *stream) next(waitingFor string) *resolver.Event {
	st.s.t.Helper()
	for {
		select {
		case r := <-st.ch:
			if r.err != nil {
				st.s.t.Fatalf("watcher %s: Next failed while waiting for %s: %v", st.what, waitingFor, r.err)
			}
			if r.ev == nil || r.ev.Service == nil {
				st.s.t.Fatalf("watcher %s: Next returned an event without a service: %+v", st.what, r.ev)
			}
			if st.names != nil && !st.names[r.ev.Service.Name] {
				continue
			}
			if r.ev.Timestamp.IsZero() {
				st.s.t.Errorf("watcher %s: event %s has no Timestamp", st.what, st.s.describeEvent(r.ev))
			}
			return r.ev
		case <-st.s.ctx.Done():
			st.s.t.Fatalf("watcher %s: no event within %v, waiting for %s", st.what, st.s.cfg.timeout, waitingFor)
			return nil
		}
	}
}

// tryNext returns an event of interest if one is ready, without waiting.
func (st *stream) tryNext() (*resolver.Event, bool) {
	st.s.t.Helper()
	for {
		select {
		case r := <-st.ch:
			if r.err != nil {
				st.s.t.Fatalf("watcher %s: Next failed: %v", st.what, r.err)
			}
			if r.ev == nil || r.ev.Service == nil {
				st.s.t.Fatalf("watcher %s: Next returned an event without a service: %+v", st.what, r.ev)
			}
			if st.names != nil && !st.names[r.ev.Service.Name] {
				continue
			}
			return r.ev, true
		default:
			return nil, false
		}
	}
}

func (s *suite) describeEvent(ev *resolver.Event) string {
	return string(ev.Action) + " " + describe(ev.Service, s.cfg.noEndpointMetadata)
}

// expectEvent waits for the next event and checks that it is action on
// exactly want's node, with want's data (for a Delete, its identity).
func (st *stream) expectEvent(action resolver.Action, want *resolver.Service) {
	st.s.t.Helper()
	wantDesc := string(action) + " " + describe(want, st.s.cfg.noEndpointMetadata)
	ev := st.next(wantDesc)
	if err := st.s.matchEvent(ev, action, want); err != nil {
		st.s.t.Fatalf("watcher %s: %v", st.what, err)
	}
}

func (s *suite) matchEvent(ev *resolver.Event, action resolver.Action, want *resolver.Service) error {
	got := s.describeEvent(ev)
	wantDesc := string(action) + " " + describe(want, s.cfg.noEndpointMetadata)
	if ev.Action != action || ev.Service.Name != want.Name || ev.Service.Version != want.Version ||
		len(ev.Service.Nodes) != len(want.Nodes) {
		return fmt.Errorf("event\n\t%s\nwant\n\t%s", got, wantDesc)
	}
	for i, n := range want.Nodes {
		if ev.Service.Nodes[i].ID != n.ID {
			return fmt.Errorf("event\n\t%s\nwant\n\t%s", got, wantDesc)
		}
	}
	// A Delete need only say which node went; what it carries besides is
	// the last data known, which the kit does not insist on.
	if action != resolver.Delete && got != wantDesc {
		return fmt.Errorf("event\n\t%s\nwant\n\t%s", got, wantDesc)
	}
	return nil
}

func testRoundTrip(s *suite) {
	name := s.name("roundtrip")
	in := service(name, "v1.2.0", "n1", 10001)
	want := in.Clone()
	s.register(s.reg, in)
	// The registry must have copied what it was given.
	in.Metadata["team"] = "changed by the caller"
	in.Endpoints[0].Name = "/changed.ByTheCaller/Hello"
	in.Endpoints[0].Metadata["idempotent"] = "changed by the caller"
	in.Nodes[0].Metadata["zone"] = "changed by the caller"
	in.Nodes[0].Address = "127.0.0.1:1"
	s.visible("every field registered comes back from GetService", func() error { return s.expect(s.reg, name, want) })

	// What GetService returns is the caller's: changing it changes nothing
	// in the registry.
	got, err := s.reg.GetService(s.ctx, name)
	if err != nil {
		s.t.Fatal(err)
	}
	for _, g := range got {
		if g.Metadata != nil {
			g.Metadata["team"] = "changed by the caller"
		}
		for i := range g.Endpoints {
			g.Endpoints[i].Name = "/changed.ByTheCaller/Hello"
			if g.Endpoints[i].Metadata != nil {
				g.Endpoints[i].Metadata["idempotent"] = "changed by the caller"
			}
		}
		for i := range g.Nodes {
			g.Nodes[i].Address = "127.0.0.1:1"
			if g.Nodes[i].Metadata != nil {
				g.Nodes[i].Metadata["zone"] = "changed by the caller"
			}
		}
	}
	if err := s.expect(s.reg, name, want); err != nil {
		s.t.Fatalf("after the caller changed what GetService returned: %v", err)
	}

	s.deregister(s.reg, want)
	s.visible("GetService after the only node left", func() error { return s.expectNotFound(s.reg, name) })
}

func testNodesAndVersions(s *suite) {
	name := s.name("versions")
	a := service(name, "v1", "a", 10001)
	b := service(name, "v1", "b", 10002)
	c := service(name, "v2", "c", 10003)
	// Two nodes in one call.
	de := service(name, "v2", "d", 10004)
	de.Nodes = append(de.Nodes, service(name, "v2", "e", 10005).Nodes[0])
	// A service whose name starts with ours: a key-value registry listing
	// by prefix must not mix the two up.
	longer := service(name+"-x", "v1", "z", 10009)
	for _, svc := range []*resolver.Service{a, b, c, de, longer} {
		s.register(s.reg, svc)
	}
	s.visible("GetService of five nodes in two versions", func() error { return s.expect(s.reg, name, a, b, c, de) })
	s.visible("GetService of a service whose name extends another's", func() error { return s.expect(s.reg, longer.Name, longer) })

	s.deregister(s.reg, b)
	s.visible("GetService after deregistering one node", func() error { return s.expect(s.reg, name, a, c, de) })
	s.deregister(s.reg, de)
	s.visible("GetService after deregistering two nodes in one call", func() error { return s.expect(s.reg, name, a, c) })
	s.deregister(s.reg, a)
	s.visible("GetService after the last node of a version left", func() error { return s.expect(s.reg, name, c) })
	s.deregister(s.reg, c)
	s.visible("GetService after every node left", func() error { return s.expectNotFound(s.reg, name) })
	if err := s.expect(s.reg, longer.Name, longer); err != nil {
		s.t.Fatalf("deregistering a service's nodes changed another service: %v", err)
	}
}

func testNotFound(s *suite) {
	if err := s.expectNotFound(s.reg, s.name("never-registered")); err != nil {
		s.t.Fatal(err)
	}
}

func testInvalid(s *suite) {
	name := s.name("invalid")
	good := func() resolver.Node { return service(name, "", "ok", 10001).Nodes[0] }
	withNode := func(n resolver.Node) *resolver.Service {
		return &resolver.Service{Name: name, Nodes: []resolver.Node{n}}
	}
	noID, slashID, noAddr := good(), good(), good()
	noID.ID = ""
	slashID.ID = "a/b"
	noAddr.Address = ""
	cases := []struct {
		what string
		svc  *resolver.Service
	}{
		{"a nil service", nil},
		{"an empty name", &resolver.Service{Nodes: []resolver.Node{good()}}},
		{"a name with '/'", &resolver.Service{Name: name + "/x", Nodes: []resolver.Node{good()}}},
		{"no nodes", &resolver.Service{Name: name}},
		{"a node without id", withNode(noID)},
		{"a node id with '/'", withNode(slashID)},
		{"a node without address", withNode(noAddr)},
		// Validation comes before any node is registered.
		{"a valid node and an invalid one", &resolver.Service{Name: name, Nodes: []resolver.Node{good(), noAddr}}},
	}
	for _, c := range cases {
		if c.svc != nil {
			s.track(s.reg, c.svc) // in case it is wrongly accepted
		}
		if err := s.reg.Register(s.ctx, c.svc); !errors.Is(err, resolver.ErrInvalidService) {
			s.t.Errorf("Register of a service with %s = %v, want an error wrapping resolver.ErrInvalidService", c.what, err)
		}
	}
	if err := s.expectNotFound(s.reg, name); err != nil {
		s.t.Errorf("after refusing invalid services: %v", err)
	}
	for _, c := range []struct {
		what string
		svc  *resolver.Service
	}{
		{"a nil service", nil},
		{"an empty name", &resolver.Service{Nodes: []resolver.Node{good()}}},
		{"a name with '/'", &resolver.Service{Name: name + "/x", Nodes: []resolver.Node{good()}}},
	} {
		if err := s.reg.Deregister(s.ctx, c.svc); !errors.Is(err, resolver.ErrInvalidService) {
			s.t.Errorf("Deregister of a service with %s = %v, want an error wrapping resolver.ErrInvalidService", c.what, err)
		}
	}
}

func testDeregisterUnknown(s *suite) {
	name := s.name("unknown")
	if err := s.reg.Deregister(s.ctx, service(name, "v1", "ghost", 10009)); err != nil {
		s.t.Errorf("Deregister of a service never registered: %v", err)
	}
	a := service(name, "v1", "a", 10001)
	s.register(s.reg, a)
	if err := s.reg.Deregister(s.ctx, service(name, "v1", "ghost", 10009)); err != nil {
		s.t.Errorf("Deregister of an unknown node of a registered service: %v", err)
	}
	s.visible("GetService after deregistering an unknown node", func() error { return s.expect(s.reg, name, a) })
	s.deregister(s.reg, a)
	s.visible("GetService after the only node left", func() error { return s.expectNotFound(s.reg, name) })
	if err := s.reg.Deregister(s.ctx, a); err != nil {
		s.t.Errorf("Deregister of a node already deregistered: %v", err)
	}
}

func testRefresh(s *suite) {
	name := s.name("refresh")
	a := service(name, "v1", "a", 10001)
	s.register(s.reg, a)
	s.visible("GetService after Register", func() error { return s.expect(s.reg, name, a) })
	s.register(s.reg, a.Clone())
	s.visible("GetService after registering the same node again", func() error { return s.expect(s.reg, name, a) })

	changed := a.Clone()
	changed.Metadata["team"] = "other"
	changed.Endpoints = changed.Endpoints[:2]
	changed.Nodes[0].Address = "127.0.0.1:10002"
	changed.Nodes[0].Metadata["zone"] = "zone-b"
	changed.Nodes[0].HealthService = ""
	s.register(s.reg, changed)
	s.visible("GetService after registering the node again with changed data", func() error { return s.expect(s.reg, name, changed) })

	moved := changed.Clone()
	moved.Version = "v2"
	s.register(s.reg, moved)
	s.visible("GetService after registering the node again with a new version", func() error { return s.expect(s.reg, name, moved) })
}

func testTTL(s *suite) {
	ttl := s.cfg.ttl
	if ttl <= 0 {
		s.t.Skip("the registry does not declare TTL expiry (registrytest.WithTTL)")
	}
	name := s.name("ttl")
	a := service(name, "v1", "a", 10001)
	w := s.watch(s.reg, "of the expiring service", resolver.WatchService(name))

	var alive, gone time.Time // from when the registration may expire; when it was seen gone
	if s.cfg.abandon != nil {
		// The registry keeps its registrations alive itself: register
		// through another one, and make that one stop as if it crashed.
		writer := s.newRegistry(s.t)
		s.register(writer, a, resolver.WithTTL(ttl))
		s.visible("GetService of a node registered with a TTL", func() error { return s.expect(s.reg, name, a) })
		until := time.Now().Add(2*ttl + ttl/2)
		for time.Now().Before(until) {
			if err := s.expect(s.reg, name, a); err != nil {
				s.t.Fatalf("a registration its registry keeps alive expired: %v", err)
			}
			if !s.sleep(ttl / 4) {
				s.t.Fatal("deadline passed")
			}
		}
		alive = time.Now()
		s.cfg.abandon(writer)
		// Abandoned: expiry is what removes it now, and a registry that is
		// gone may be slow to refuse a Deregister.
		s.untrack(writer)
	} else {
		// Registering again is what keeps it alive.
		s.register(s.reg, a, resolver.WithTTL(ttl))
		s.visible("GetService of a node registered with a TTL", func() error { return s.expect(s.reg, name, a) })
		until := time.Now().Add(2*ttl + ttl/2)
		for time.Now().Before(until) {
			if !s.sleep(ttl / 4) {
				s.t.Fatal("deadline passed")
			}
			s.register(s.reg, a, resolver.WithTTL(ttl))
			s.visible("a registration refreshed within its TTL", func() error { return s.expect(s.reg, name, a) })
		}
		alive = time.Now()
		s.register(s.reg, a, resolver.WithTTL(ttl))
	}
	s.poll("the registration to expire", func() error { return s.expectNotFound(s.reg, name) })
	gone = time.Now()
	d := gone.Sub(alive)
	if s.cfg.abandon == nil && d < ttl/2 {
		s.t.Errorf("the registration expired %v after its last refresh, well before its %v TTL", d, ttl)
	}
	if limit := 2*ttl + 2*time.Second; d > limit {
		s.t.Errorf("the registration expired %v after its last refresh, want within about its %v TTL (at most %v)", d, ttl, limit)
	}
	s.t.Logf("a registration with a %v TTL expired %v after it was last refreshed", ttl, d)

	// Watchers saw it come, perhaps refreshed, and go.
	w.expectEvent(resolver.Create, a)
	for {
		ev := w.next("the expired node's Delete")
		if ev.Action == resolver.Update {
			continue // a refresh may be reported
		}
		if err := s.matchEvent(ev, resolver.Delete, a); err != nil {
			s.t.Fatalf("watcher of the expiring service: %v", err)
		}
		break
	}
}

func testListServices(s *suite) {
	one, two := s.name("list-one"), s.name("list-two")
	byName := map[string][]*resolver.Service{
		one: {service(one, "v1", "a", 10001)},
		two: {service(two, "v1", "b", 10002), service(two, "v2", "c", 10003)},
	}
	for _, svcs := range byName {
		for _, svc := range svcs {
			s.register(s.reg, svc)
		}
	}
	// listed checks that ListServices lists exactly the names of ours in
	// want; other services (of other tests, or processes) may be listed
	// too. Nodes, when it returns them, must be ones registered.
	listed := func(want ...string) func() error {
		return func() error {
			list, err := s.reg.ListServices(s.ctx)
			if err != nil {
				return fmt.Errorf("ListServices: %w", err)
			}
			seen := map[string]bool{}
			for _, l := range list {
				if l == nil {
					return errors.New("ListServices returned a nil service")
				}
				regd, ours := byName[l.Name]
				if !ours {
					continue
				}
				seen[l.Name] = true
				for _, n := range l.Nodes {
					if !slices.ContainsFunc(regd, func(r *resolver.Service) bool {
						return r.Nodes[0].ID == n.ID && r.Nodes[0].Address == n.Address && r.Version == l.Version
					}) {
						return fmt.Errorf("ListServices lists %s, with a node never registered", describe(l, true))
					}
				}
			}
			for name := range byName {
				if seen[name] != slices.Contains(want, name) {
					return fmt.Errorf("ListServices lists our services %v, want %v", slices.Sorted(maps.Keys(seen)), want)
				}
			}
			return nil
		}
	}
	s.visible("ListServices after registering two services", listed(one, two))
	for _, svc := range byName[one] {
		s.deregister(s.reg, svc)
	}
	s.visible("ListServices after one service's only node left", listed(two))
	for _, svc := range byName[two] {
		s.deregister(s.reg, svc)
	}
	s.visible("ListServices after every node left", listed())
}

func testWatch(s *suite) {
	name, other := s.name("watch"), s.name("watch-other")
	one := s.watch(s.reg, "of one service", resolver.WatchService(name))
	all := s.watch(s.reg, "of all services", resolver.WatchService(""))
	all.names = map[string]bool{name: true, other: true}
	both := []*stream{one, all}

	o := service(other, "v1", "o", 10009)
	s.register(s.reg, o)
	all.expectEvent(resolver.Create, o)

	a := service(name, "v1", "a", 10001)
	s.register(s.reg, a)
	for _, w := range both {
		w.expectEvent(resolver.Create, a)
	}
	changed := a.Clone()
	changed.Nodes[0].Metadata["zone"] = "zone-b"
	changed.Metadata["team"] = "other"
	s.register(s.reg, changed)
	for _, w := range both {
		w.expectEvent(resolver.Update, changed)
	}
	b := service(name, "v1", "b", 10002)
	s.register(s.reg, b)
	for _, w := range both {
		w.expectEvent(resolver.Create, b)
	}
	s.deregister(s.reg, changed)
	for _, w := range both {
		w.expectEvent(resolver.Delete, changed)
	}
	// The other service goes before ours: the watcher of ours must not see
	// it before b's Delete.
	s.deregister(s.reg, o)
	all.expectEvent(resolver.Delete, o)
	s.deregister(s.reg, b)
	for _, w := range both {
		w.expectEvent(resolver.Delete, b)
	}
}

func testWatchStop(s *suite) {
	name := s.name("watch-stop")
	w, err := s.reg.Watch(s.ctx, resolver.WatchService(name))
	if err != nil {
		s.t.Fatal(err)
	}
	defer w.Stop()
	done := make(chan error, 1)
	go func() {
		_, err := w.Next()
		done <- err
	}()
	// Give Next a moment to block, so that Stop comes while it waits (if it
	// comes first, Next must return all the same).
	s.sleep(50 * time.Millisecond)
	s.within("Stop", w.Stop)
	select {
	case err := <-done:
		if !errors.Is(err, resolver.ErrWatcherStopped) {
			s.t.Errorf("Next after Stop = %v, want resolver.ErrWatcherStopped", err)
		}
	case <-s.ctx.Done():
		s.t.Fatalf("Next did not return after Stop, by the subtest's deadline (%v)", s.cfg.timeout)
	}
	s.within("a second Stop", w.Stop)
	// A stopped watcher stays stopped, also when changes follow.
	s.register(s.reg, service(name, "v1", "a", 10001))
	var nextErr error
	s.within("Next on a stopped watcher", func() { _, nextErr = w.Next() })
	if !errors.Is(nextErr, resolver.ErrWatcherStopped) {
		s.t.Errorf("Next on a stopped watcher = %v, want resolver.ErrWatcherStopped", nextErr)
	}
}

func testWatchContext(s *suite) {
	name := s.name("watch-ctx")
	wctx, cancel := context.WithCancel(s.ctx)
	defer cancel()
	w, err := s.reg.Watch(wctx, resolver.WatchService(name))
	if err != nil {
		s.t.Fatal(err)
	}
	defer w.Stop()
	done := make(chan error, 1)
	go func() {
		_, err := w.Next()
		done <- err
	}()
	s.sleep(50 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		// The model asks for an error; ErrWatcherStopped or the context's
		// own are the ones that tell the caller why.
		if !errors.Is(err, resolver.ErrWatcherStopped) && !errors.Is(err, context.Canceled) {
			s.t.Errorf("Next after the watch's context ended = %v, want resolver.ErrWatcherStopped or context.Canceled", err)
		}
	case <-s.ctx.Done():
		s.t.Fatalf("Next did not return after its context ended, by the subtest's deadline (%v)", s.cfg.timeout)
	}
	s.within("Stop after the context ended", w.Stop)

	// A context over before Watch: Watch fails, or its watcher does.
	over, cancelOver := context.WithCancel(s.ctx)
	cancelOver()
	w2, err := s.reg.Watch(over, resolver.WatchService(name))
	if err != nil {
		return
	}
	defer w2.Stop()
	var nextErr error
	s.within("Next of a watcher whose context ended before Watch", func() { _, nextErr = w2.Next() })
	if nextErr == nil {
		s.t.Error("Next of a watcher whose context ended before Watch returned an event, want an error")
	}
}

func testConcurrent(s *suite) {
	const workers, rounds = 4, 5
	name := s.name("concurrent")
	w := s.watch(s.reg, "of the service changed concurrently", resolver.WatchService(name))
	shared := service(name, "v1", "shared", 10000)
	own := make([]*resolver.Service, workers)
	want := []*resolver.Service{shared}
	for i := range own {
		own[i] = service(name, "v1", fmt.Sprintf("w%d", i), 10001+i)
		s.track(s.reg, own[i])
		if i%2 == 0 {
			want = append(want, own[i]) // even workers end registered
		}
	}
	s.track(s.reg, shared)
	var wg sync.WaitGroup
	for i := range workers {
		wg.Go(func() {
			for r := range rounds {
				// Every worker also heartbeats the shared node: concurrent
				// registrations of one node must be safe too.
				for _, svc := range []*resolver.Service{own[i], shared} {
					if err := s.reg.Register(s.ctx, svc); err != nil {
						s.t.Errorf("concurrent Register(%s): %v", short(svc), err)
						return
					}
				}
				if _, err := s.reg.GetService(s.ctx, name); err != nil && !errors.Is(err, resolver.ErrNotFound) {
					s.t.Errorf("concurrent GetService: %v", err)
				}
				if _, err := s.reg.ListServices(s.ctx); err != nil {
					s.t.Errorf("concurrent ListServices: %v", err)
				}
				if r == rounds-1 && i%2 == 0 {
					break
				}
				if err := s.reg.Deregister(s.ctx, own[i]); err != nil {
					s.t.Errorf("concurrent Deregister(%s): %v", short(own[i]), err)
					return
				}
			}
		})
	}
	wg.Wait()
	if s.t.Failed() {
		return
	}
	s.visible("GetService after concurrent changes", func() error { return s.expect(s.reg, name, want...) })

	// Replaying the watcher's events gives the same nodes, whether it
	// reported every change or (a polling watcher) coalesced some.
	replay := map[string]bool{}
	var wantIDs []string
	for _, svc := range want {
		wantIDs = append(wantIDs, svc.Nodes[0].ID)
	}
	slices.Sort(wantIDs)
	s.poll("the watcher's events to add up to the registry's nodes", func() error {
		for {
			ev, ok := w.tryNext()
			if !ok {
				break
			}
			for _, n := range ev.Service.Nodes {
				replay[n.ID] = ev.Action != resolver.Delete
			}
		}
		var got []string
		for id, present := range replay {
			if present {
				got = append(got, id)
			}
		}
		slices.Sort(got)
		if !slices.Equal(got, wantIDs) {
			return fmt.Errorf("events add up to nodes %v, want %v", got, wantIDs)
		}
		return nil
	})
}
