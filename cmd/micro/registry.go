package main

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/microgrpc/microgrpc/internal/backoff"
	"github.com/microgrpc/microgrpc/micro/dynamic"
	"github.com/microgrpc/microgrpc/resolver"
)

var servicesCmd = &command{
	name:     "services",
	synopsis: "micro services [flags]",
	summary:  "every service in the registry, with its versions and node count",
	help: `Lists every service the registry knows, with its versions and how many
nodes run it. With the http broker, each subscribed topic shows up as a
service micro.broker.<topic>.

Examples:
  micro services
  micro services --registry=etcd --registry_address=10.0.0.5:2379 -o json`,
	minArgs: 0, maxArgs: 0,
	flags: func(c *cmdline) func(context.Context, *cmdline) error {
		timeout := c.timeoutFlag(30*time.Second, "bounds the registry reads")
		return func(ctx context.Context, c *cmdline) error { return runServices(ctx, c, *timeout) }
	},
}

// serviceSummary is one line of micro services.
type serviceSummary struct {
	Name     string   `json:"name"`
	Versions []string `json:"versions"`
	Nodes    int      `json:"nodes"`
}

func runServices(ctx context.Context, c *cmdline, timeout time.Duration) error {
	ctx, cancel := withTimeout(ctx, timeout)
	defer cancel()
	reg, desc, err := c.registry()
	if err != nil {
		return err
	}
	list, err := reg.ListServices(ctx)
	if err != nil {
		return fmt.Errorf("%s: list services: %v", desc, err)
	}
	var names []string
	for _, s := range list {
		names = append(names, s.Name)
	}
	slices.Sort(names)
	names = slices.Compact(names)
	// ListServices may leave nodes out; the counts come from GetService,
	// a few services at a time.
	out := make([]serviceSummary, len(names))
	errs := make([]error, len(names))
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for i, name := range names {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			out[i] = serviceSummary{Name: name, Versions: []string{}}
			svcs, err := reg.GetService(ctx, name)
			if err != nil && !errors.Is(err, resolver.ErrNotFound) {
				errs[i] = fmt.Errorf("%s: get service %q: %v", desc, name, err)
				return
			}
			for _, s := range svcs {
				out[i].Versions = append(out[i].Versions, s.Version)
				out[i].Nodes += len(s.Nodes)
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if c.json() {
		return c.printJSON(out)
	}
	t := newTable(c.out, "SERVICE", "VERSIONS", "NODES")
	for _, s := range out {
		t.row(s.Name, strings.Join(slices.DeleteFunc(slices.Clone(s.Versions), func(v string) bool { return v == "" }), ","), fmt.Sprint(s.Nodes))
	}
	return t.flush()
}

var describeCmd = &command{
	name:     "describe",
	synopsis: "micro describe [flags] SERVICE",
	summary:  "the nodes (with health) and endpoints of a service, with message types",
	help: `Shows the nodes of SERVICE (id, address, version, metadata, and the health
each node reports), and its endpoints. When the service serves gRPC
reflection (every micro service does), each endpoint's request and
response types are shown too, as proto source; without it, the endpoints
the nodes registered.

Example:
  micro describe greeter`,
	minArgs: 1, maxArgs: 1,
	flags: func(c *cmdline) func(context.Context, *cmdline) error {
		timeout := c.timeoutFlag(30*time.Second, "bounds the registry reads, health checks and reflection")
		return func(ctx context.Context, c *cmdline) error { return runDescribe(ctx, c, *timeout) }
	},
}

// description is what micro describe shows.
type description struct {
	Service string `json:"service"`
	// Registry is the registry plugin's name; where says which registry
	// for people ("etcd registry at 10.0.0.5:2379").
	Registry  string `json:"registry"`
	where     string
	Nodes     []nodeDesc     `json:"nodes"`
	Endpoints []endpointDesc `json:"endpoints"`
	// Services are the gRPC services' definitions, Types their messages
	// and enums, as proto source; both come from reflection.
	Services []typeDef `json:"services,omitempty"`
	Types    []typeDef `json:"types,omitempty"`
	// ReflectionError says why there are no types.
	ReflectionError string `json:"reflection_error,omitempty"`
}

type nodeDesc struct {
	ID       string            `json:"id"`
	Address  string            `json:"address"`
	Version  string            `json:"version"`
	Metadata map[string]string `json:"metadata"`
	Health   nodeHealth        `json:"health"`
}

type endpointDesc struct {
	Method          string `json:"method"` // as micro call takes it: greeter.Greeter/Hello
	ClientStreaming bool   `json:"client_streaming"`
	ServerStreaming bool   `json:"server_streaming"`
	Request         string `json:"request,omitempty"`
	Response        string `json:"response,omitempty"`
}

func (e endpointDesc) kind() string {
	switch {
	case e.ClientStreaming && e.ServerStreaming:
		return "bidi streaming"
	case e.ClientStreaming:
		return "client streaming"
	case e.ServerStreaming:
		return "server streaming"
	}
	return "unary"
}

func runDescribe(ctx context.Context, c *cmdline, timeout time.Duration) error {
	name := c.args[0]
	ctx, cancel := withTimeout(ctx, timeout)
	defer cancel()
	svcs, desc, err := c.getService(ctx, name)
	if err != nil {
		return err
	}
	d := description{Service: name, Registry: strings.Fields(desc)[0], where: desc, Nodes: []nodeDesc{}, Endpoints: []endpointDesc{}}
	nodes := nodesOf(svcs)
	var wg sync.WaitGroup
	var hs []nodeHealth
	wg.Go(func() { hs = checkNodes(ctx, nodes, min(timeout, 10*time.Second)) })
	registered := map[string]endpointDesc{}
	for _, s := range svcs {
		for _, e := range s.Endpoints {
			m := strings.TrimPrefix(e.Name, "/")
			registered[m] = endpointDesc{Method: m, ClientStreaming: e.ClientStreaming, ServerStreaming: e.ServerStreaming}
		}
	}
	if err := c.reflectInto(ctx, name, registered, &d); err != nil {
		d.ReflectionError = statusMessage(err)
		for _, m := range slices.Sorted(maps.Keys(registered)) {
			d.Endpoints = append(d.Endpoints, registered[m])
		}
	}
	wg.Wait()
	for i, n := range nodes {
		md := n.Metadata
		if md == nil {
			md = map[string]string{} // {} in JSON, like every other node's
		}
		d.Nodes = append(d.Nodes, nodeDesc{ID: n.ID, Address: n.Address, Version: n.Version, Metadata: md, Health: hs[i]})
	}
	if c.json() {
		return c.printJSON(d)
	}
	return printDescription(c, &d)
}

// reflectInto fills the endpoints and types of d from the service's
// reflection: the gRPC services the registry's endpoints name or, when the
// nodes registered none (a plain gRPC server), every service but health
// and reflection.
func (c *cmdline) reflectInto(ctx context.Context, name string, registered map[string]endpointDesc, d *description) error {
	cc, err := c.svc.Conn(name)
	if err != nil {
		return err
	}
	dc := dynamic.NewClient(cc)
	all, err := dc.Services(ctx)
	if err != nil {
		return err
	}
	var want []string
	for m := range registered {
		if i := strings.LastIndexByte(m, '/'); i > 0 {
			want = append(want, m[:i])
		}
	}
	if len(want) == 0 {
		for _, s := range all {
			if s != "grpc.health.v1.Health" && !strings.HasPrefix(s, "grpc.reflection.") {
				want = append(want, s)
			}
		}
	}
	slices.Sort(want)
	want = slices.Compact(want)
	var roots []protoreflect.MessageDescriptor
	for _, s := range want {
		sd, err := dc.Service(ctx, s)
		if status.Code(err) == codes.NotFound {
			continue // registered by a node that serves it, not the one asked: listed below
		}
		if err != nil {
			return err
		}
		d.Services = append(d.Services, typeDef{Name: string(sd.FullName()), Kind: "service", Proto: serviceProto(sd)})
		for i := range sd.Methods().Len() {
			md := sd.Methods().Get(i)
			d.Endpoints = append(d.Endpoints, endpointDesc{
				Method:          strings.TrimPrefix(dynamic.FullMethod(md), "/"),
				ClientStreaming: md.IsStreamingClient(), ServerStreaming: md.IsStreamingServer(),
				Request: string(md.Input().FullName()), Response: string(md.Output().FullName()),
			})
			roots = append(roots, md.Input(), md.Output())
		}
	}
	// Registered endpoints that reflection does not show (a node of an
	// older build, say) are still listed.
	for m, e := range registered {
		if !slices.ContainsFunc(d.Endpoints, func(x endpointDesc) bool { return x.Method == m }) {
			d.Endpoints = append(d.Endpoints, e)
		}
	}
	slices.SortFunc(d.Endpoints, func(a, b endpointDesc) int { return strings.Compare(a.Method, b.Method) })
	d.Types = referencedTypes(roots)
	return nil
}

func printDescription(c *cmdline, d *description) error {
	fmt.Fprintf(c.out, "Service %s in the %s\n\n", d.Service, d.where)
	t := newTable(c.out, "NODE", "ADDRESS", "VERSION", "HEALTH", "METADATA")
	for _, n := range d.Nodes {
		t.row(n.ID, n.Address, n.Version, n.Health.text(), formatMap(n.Metadata))
	}
	if err := t.flush(); err != nil {
		return err
	}
	fmt.Fprintln(c.out)
	if len(d.Endpoints) == 0 {
		fmt.Fprintln(c.out, "No endpoints registered.")
	} else {
		t = newTable(c.out, "METHOD", "KIND", "REQUEST", "RESPONSE")
		for _, e := range d.Endpoints {
			t.row(e.Method, e.kind(), e.Request, e.Response)
		}
		if err := t.flush(); err != nil {
			return err
		}
	}
	if d.ReflectionError != "" {
		fmt.Fprintf(c.out, "\nNo message types: %s\n", d.ReflectionError)
		return nil
	}
	for _, def := range append(slices.Clone(d.Services), d.Types...) {
		fmt.Fprintf(c.out, "\n%s is a %s:\n%s", def.Name, def.Kind, def.Proto)
	}
	return nil
}

var watchCmd = &command{
	name:     "watch",
	synopsis: "micro watch [flags] [SERVICE]",
	summary:  "registry events (create, update, delete) as they happen",
	help: `Prints the registry's events as they happen, one line per node: create
(a node joined), update (its record changed or was refreshed), delete (it
left or expired), for SERVICE or, without one, every service; until
interrupted (Ctrl-C, SIGTERM), which ends it with exit status 0. After a
registry error it says so on standard error and watches again.

Examples:
  micro watch greeter
  micro watch -o json | jq .`,
	minArgs: 0, maxArgs: 1,
	flags: func(c *cmdline) func(context.Context, *cmdline) error {
		return runWatch
	},
}

// watchEvent is one line of micro watch -o json.
type watchEvent struct {
	Time    time.Time       `json:"time"`
	Action  resolver.Action `json:"action"`
	Service string          `json:"service"`
	Version string          `json:"version"`
	Nodes   []watchNode     `json:"nodes"`
}

type watchNode struct {
	ID       string            `json:"id"`
	Address  string            `json:"address"`
	Metadata map[string]string `json:"metadata,omitempty"`
}

// watchRetry spaces out watches again after registry errors.
var watchRetry = backoff.Policy{Min: 500 * time.Millisecond, Max: 10 * time.Second}

func runWatch(ctx context.Context, c *cmdline) error {
	var opts []resolver.WatchOption
	what := "every service"
	if len(c.args) == 1 {
		if err := resolver.ValidateName(c.args[0]); err != nil {
			return usageErrorf("service name: %v", err)
		}
		opts = append(opts, resolver.WatchService(c.args[0]))
		what = c.args[0]
	}
	reg, desc, err := c.registry()
	if err != nil {
		return err
	}
	for attempt := 0; ; attempt++ {
		w, err := reg.Watch(ctx, opts...)
		if ctx.Err() != nil {
			return nil // interrupted: the normal end
		}
		if err != nil {
			if attempt == 0 {
				return fmt.Errorf("%s: watch %s: %v", desc, what, err)
			}
			fmt.Fprintf(c.err, "micro watch: %s: %s; watching again\n", desc, oneLine(err.Error()))
			backoff.Sleep(ctx, watchRetry.Delay(attempt), nil)
			continue
		}
		if attempt == 0 {
			fmt.Fprintf(c.err, "watching %s in the %s (Ctrl-C to stop)\n", what, desc)
		}
		err = c.printEvents(w)
		w.Stop()
		if ctx.Err() != nil {
			return nil
		}
		fmt.Fprintf(c.err, "micro watch: %s: %s; watching again\n", desc, oneLine(err.Error()))
		if !backoff.Sleep(ctx, watchRetry.Delay(0), nil) {
			return nil
		}
	}
}

// printEvents prints the watcher's events until it fails or stops.
func (c *cmdline) printEvents(w resolver.Watcher) error {
	for {
		ev, err := w.Next()
		if err != nil {
			return err
		}
		if ev.Service == nil {
			continue
		}
		e := watchEvent{Time: ev.Timestamp, Action: ev.Action, Service: ev.Service.Name, Version: ev.Service.Version, Nodes: []watchNode{}}
		if e.Time.IsZero() {
			e.Time = time.Now()
		}
		for _, n := range ev.Service.Nodes {
			e.Nodes = append(e.Nodes, watchNode{ID: n.ID, Address: n.Address, Metadata: n.Metadata})
		}
		if c.json() {
			if err := c.printJSON(e); err != nil {
				return err
			}
			continue
		}
		for _, n := range e.Nodes {
			line := fmt.Sprintf("%s  %-6s  %s  node %s at %s", e.Time.Format("2006-01-02T15:04:05.000Z07:00"), e.Action, e.Service, n.ID, n.Address)
			if e.Version != "" {
				line += "  version " + e.Version
			}
			if md := formatMap(n.Metadata); md != "" {
				line += "  " + md
			}
			fmt.Fprintln(c.out, line)
		}
	}
}
