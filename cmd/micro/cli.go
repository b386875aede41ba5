package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/grpc/grpclog"
	"google.golang.org/grpc/status"

	"github.com/microgrpc/microgrpc/internal/envconfig"
	"github.com/microgrpc/microgrpc/micro"
	"github.com/microgrpc/microgrpc/resolver"
)

// cmdline is one run of a command: its flags, arguments and the micro
// service it talks through.
type cmdline struct {
	*stdio
	cmd    *command
	fs     *flag.FlagSet
	args   []string
	output string
	svc    *micro.Service
	values envconfig.Values
}

// json reports whether -o json was given.
func (c *cmdline) json() bool { return c.output == "json" }

// runCommand parses the command line of cmd, makes the service from the
// standard flags and environment, runs the command and returns the exit
// status.
func runCommand(ctx context.Context, cmd *command, args []string, io *stdio) int {
	fs := flag.NewFlagSet("micro "+cmd.name, flag.ContinueOnError)
	fs.SetOutput(discard{}) // errors are reported below, in one line
	c := &cmdline{stdio: io, cmd: cmd, fs: fs}
	fs.StringVar(&c.output, "o", "text", "output `format`: text (aligned tables, for people) or json (one JSON document per line, for scripts)")
	runFn := cmd.flags(c)
	// The standard flags of services, read by micro's own code in Init.
	micro.DefineFlags(fs)
	pos, err := parseInterleaved(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		c.printHelp(io.out)
		return exitOK
	}
	if err == nil && c.output != "text" && c.output != "json" {
		err = fmt.Errorf("-o %q: want text or json", c.output)
	}
	if err == nil && (len(pos) < cmd.minArgs || len(pos) > cmd.maxArgs) {
		want := strings.TrimSpace(strings.TrimPrefix(cmd.synopsis, "micro "+cmd.name+" [flags]"))
		if want == "" {
			want = "no arguments"
		}
		err = fmt.Errorf("want %s", want)
		if len(pos) > cmd.maxArgs {
			err = fmt.Errorf("unexpected argument %q: want %s", pos[cmd.maxArgs], want)
		}
	}
	if err != nil {
		fmt.Fprintf(io.err, "micro %s: %s (micro %s -h for help)\n", cmd.name, oneLine(err.Error()), cmd.name)
		return exitUsage
	}
	c.args = pos
	quietGRPC()
	c.svc = micro.NewService(micro.WithName("micro-cli"), micro.WithLogger(logger(io.err)))
	defer c.svc.Close()
	if err := c.svc.Init(micro.WithFlagSet(fs)); err != nil {
		fmt.Fprintf(io.err, "micro %s: %s\n", cmd.name, oneLine(err.Error()))
		return exitFail
	}
	c.values = envconfig.Read(fs, os.LookupEnv)
	if err := runFn(ctx, c); err != nil {
		var ue *usageError
		if errors.As(err, &ue) {
			fmt.Fprintf(io.err, "micro %s: %s (micro %s -h for help)\n", cmd.name, oneLine(err.Error()), cmd.name)
			return exitUsage
		}
		fmt.Fprintf(io.err, "micro %s: %s\n", cmd.name, oneLine(err.Error()))
		return exitFail
	}
	return exitOK
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// logger is the service's and the plugins' logger: errors only, so that
// what a command prints is its output and its one-line error. Set
// MICRO_LOG_LEVEL=debug (or info, warn) to see more.
func logger(w io.Writer) *slog.Logger {
	level := slog.LevelError
	if v, ok := envconfig.CommandLogLevel.Lookup(os.LookupEnv); ok {
		_ = level.UnmarshalText([]byte(v))
	}
	l := slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
	slog.SetDefault(l) // plugins made by name log through the default
	return l
}

// quietGRPC keeps grpc-go's own error logs (a node without a health
// service, a connection refused while the balancer tries another node)
// off standard error, where the command's error must be the one line,
// unless the operator asks for them with grpc-go's own variables.
func quietGRPC() {
	if _, ok := os.LookupEnv("GRPC_GO_LOG_SEVERITY_LEVEL"); ok {
		return
	}
	grpclog.SetLoggerV2(grpclog.NewLoggerV2(io.Discard, io.Discard, io.Discard))
}

// parseInterleaved parses flags anywhere on the line, as people write
// them (micro call greeter Greeter.Hello '{}' --timeout 5s), and returns
// the other arguments in order. "--" ends the flags.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if used := len(args) - len(rest); used > 0 && args[used-1] == "--" {
			return append(pos, rest...), nil
		}
		if len(rest) == 0 {
			return pos, nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// shownSettings are the standard flags a command's help lists: those that
// matter to a client. The others (server_*, register_*) are accepted, as
// every program of microgrpc accepts them, and change nothing here.
var shownSettings = []envconfig.Setting{
	envconfig.Registry, envconfig.RegistryAddress, envconfig.MDNSInterfaces,
	envconfig.Broker, envconfig.BrokerAddress, envconfig.ClientRequestTimeout, envconfig.ClientRetries, envconfig.ClientThrottling,
}

func (c *cmdline) printHelp(w io.Writer) {
	fmt.Fprintf(w, "usage: %s\n\n%s\n", c.cmd.synopsis, strings.TrimSpace(c.cmd.help))
	std := map[string]bool{}
	for _, s := range envconfig.All {
		std[s.Flag] = true
	}
	fmt.Fprintln(w, "\nFlags:")
	c.fs.VisitAll(func(f *flag.Flag) {
		if !std[f.Name] {
			printFlag(w, f)
		}
	})
	fmt.Fprintln(w, "\nRegistry and broker (the flags and MICRO_* environment of services):")
	for _, s := range shownSettings {
		printFlag(w, c.fs.Lookup(s.Flag))
	}
}

func printFlag(w io.Writer, f *flag.Flag) {
	name, usage := flag.UnquoteUsage(f)
	if name != "" {
		name = " " + name
	}
	def := ""
	if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "[]" {
		def = fmt.Sprintf(" (default %s)", f.DefValue)
	}
	fmt.Fprintf(w, "  -%s%s\n    \t%s%s\n", f.Name, name, usage, def)
}

// oneLine keeps an error to one line.
func oneLine(s string) string {
	return strings.Join(strings.FieldsFunc(s, func(r rune) bool { return r == '\n' || r == '\r' }), "; ")
}

// statusMessage is a status error's message without the rpc error
// prefix, and without the "dynamic: " of the call package's own errors.
func statusMessage(err error) string {
	return strings.TrimPrefix(status.Convert(err).Message(), "dynamic: ")
}

// timeoutFlag defines --timeout.
func (c *cmdline) timeoutFlag(def time.Duration, usage string) *time.Duration {
	return c.fs.Duration("timeout", def, usage)
}

// given reports whether the flag was on the command line.
func (c *cmdline) given(name string) bool {
	found := false
	c.fs.Visit(func(f *flag.Flag) { found = found || f.Name == name })
	return found
}

// withTimeout bounds ctx by d, unless d is zero.
func withTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if d <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, d)
}

// registry returns the registry and how to name it in messages: its
// plugin and, when given, its addresses ("etcd registry at 10.0.0.5:2379").
func (c *cmdline) registry() (resolver.Registry, string, error) {
	reg, err := c.svc.Registry()
	if err != nil {
		return nil, "", err
	}
	desc := reg.String() + " registry"
	if addrs := c.values.List(envconfig.RegistryAddress); len(addrs) > 0 {
		desc += " at " + strings.Join(addrs, ",")
	} else if ifs := c.values.List(envconfig.MDNSInterfaces); len(ifs) > 0 && reg.String() == "mdns" {
		desc += " on " + strings.Join(ifs, ",")
	}
	return reg, desc, nil
}

// getService returns the versions of a service, or an error that says
// which registry does not have it.
func (c *cmdline) getService(ctx context.Context, name string) ([]*resolver.Service, string, error) {
	if err := resolver.ValidateName(name); err != nil {
		return nil, "", usageErrorf("service name: %v", err)
	}
	reg, desc, err := c.registry()
	if err != nil {
		return nil, "", err
	}
	svcs, err := reg.GetService(ctx, name)
	nodes := 0
	for _, s := range svcs {
		nodes += len(s.Nodes)
	}
	if errors.Is(err, resolver.ErrNotFound) || (err == nil && nodes == 0) {
		return nil, desc, fmt.Errorf("service %q not found in the %s (micro services lists the services it has)", name, desc)
	}
	if err != nil {
		return nil, desc, fmt.Errorf("%s: get service %q: %v", desc, name, err)
	}
	return svcs, desc, nil
}

// nodeOf is one node with its service version.
type nodeOf struct {
	resolver.Node
	Version string
}

// nodesOf flattens the versions of a service into its nodes, by id.
func nodesOf(svcs []*resolver.Service) []nodeOf {
	var out []nodeOf
	for _, s := range svcs {
		for _, n := range s.Nodes {
			out = append(out, nodeOf{Node: n, Version: s.Version})
		}
	}
	slices.SortFunc(out, func(a, b nodeOf) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// printJSON writes v as one line of JSON.
func (c *cmdline) printJSON(v any) error {
	enc := json.NewEncoder(c.out)
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// table writes aligned columns.
type table struct{ tw *tabwriter.Writer }

func newTable(w io.Writer, header ...string) *table {
	t := &table{tw: tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)}
	t.row(header...)
	return t
}

func (t *table) row(cells ...string) {
	for i, c := range cells {
		if c == "" {
			cells[i] = "-"
		}
	}
	fmt.Fprintln(t.tw, strings.Join(cells, "\t"))
}

func (t *table) flush() error { return t.tw.Flush() }

// formatMap prints metadata as k=v pairs, sorted.
func formatMap(m map[string]string) string {
	var kv []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		kv = append(kv, k+"="+m[k])
	}
	return strings.Join(kv, ",")
}

// readData returns a request or message given as an argument or with -d:
// JSON itself, @FILE, or - for standard input. ok is false when neither
// was given.
func (c *cmdline) readData(arg, flagVal string, argGiven bool) (data []byte, ok bool, err error) {
	src := arg
	switch {
	case argGiven && c.given("d"):
		return nil, false, usageErrorf("the data is given twice: as an argument and with -d")
	case c.given("d"):
		src = flagVal
	case !argGiven:
		return nil, false, nil
	}
	switch {
	case src == "-":
		data, err = io.ReadAll(c.in)
		if err != nil {
			return nil, false, fmt.Errorf("read standard input: %v", err)
		}
	case strings.HasPrefix(src, "@"):
		data, err = os.ReadFile(src[1:])
		if err != nil {
			return nil, false, fmt.Errorf("read %s: %v", src[1:], errors.Unwrap(err))
		}
	default:
		data = []byte(src)
	}
	return data, true, nil
}

// checkJSON says where JSON is malformed, before anything is sent.
func checkJSON(what string, data []byte) error {
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		return fmt.Errorf("%s is not valid JSON: %v", what, err)
	}
	return nil
}

// headerFlag collects -H key=value (or "key: value") metadata.
type headerFlag [][2]string

func (h *headerFlag) String() string { return "" }

func (h *headerFlag) Set(v string) error {
	i := strings.IndexAny(v, "=:")
	if i <= 0 {
		return fmt.Errorf("%q: want key=value", v)
	}
	k, val := strings.ToLower(strings.TrimSpace(v[:i])), strings.TrimSpace(v[i+1:])
	if k == "" {
		return fmt.Errorf("%q: empty key", v)
	}
	*h = append(*h, [2]string{k, val})
	return nil
}
