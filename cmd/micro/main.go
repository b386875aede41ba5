// Command micro looks at and talks to microgrpc services by name, through
// the same registries, balancer and codecs as the library: go-micro's CLI,
// on gRPC. It speaks to any microgrpc service, and to any plain gRPC server
// registered in the same registry.
//
//	go install github.com/microgrpc/microgrpc/cmd/micro@latest
//
// Usage:
//
//	micro services                       every service, its versions and node count
//	micro describe SERVICE               its nodes (health included) and endpoints, with message types
//	micro call SERVICE METHOD [JSON]     call a method by name, JSON in and out
//	micro health SERVICE                 each node's health; exit status 1 unless all serve
//	micro publish TOPIC [JSON]           publish a JSON message on the broker
//	micro subscribe TOPIC                print the messages published to TOPIC until interrupted
//	micro watch [SERVICE]                print registry events as they happen until interrupted
//	micro gateway [--address HOST:PORT]  serve every service over HTTP (JSON, REST, Connect, gRPC-Web), with a dashboard
//	micro xds [bootstrap]                serve the registry to xDS clients; print their bootstrap file
//
// Every command takes the flags and MICRO_* environment variables of
// services, read by the same code (--registry, --registry_address,
// --mdns_interfaces, --broker, --broker_address, ...), -o json for output
// that scripts read (one JSON document per line) instead of aligned tables,
// and -h for its own help. Errors are one line on standard error, naming
// what failed; the exit status is 1 after an error and 2 after a usage
// error.
//
// # Calls
//
//	micro call greeter greeter.Greeter/Hello '{"name":"John"}'
//	micro call greeter Greeter.Hello -d @request.json -H authorization=secret
//	micro call greeter Greeter.HelloStream '{"name":"John","count":3}'
//	printf '{"name":"a"}\n{"name":"b"}\n' | micro call greeter Greeter.HelloMany
//
// The method's types are learned through server reflection (v1, falling
// back to v1alpha), and the call goes through the registry's resolver and
// the random_hash balancer, with its retries, as a call of a service's
// would. The method is named as gRPC sends it (greeter.Greeter/Hello, with
// or without a leading slash) or go-micro's way (Greeter.Hello) when that
// is unambiguous. The request is the JSON argument, -d JSON, -d @FILE or
// -d - (standard input); without one it is {} for unary and
// server-streaming methods, and client- and bidirectional-streaming
// methods read newline-delimited JSON requests from standard input.
// Responses are printed as compact JSON, one line per message. --node ID
// sends the call to one node, --hash KEY to the node the key hashes to,
// -H key=value adds metadata (repeatable), and --timeout bounds the call
// (default 30s for unary calls; streaming calls have none unless given).
//
// # Pub/sub
//
//	micro publish events '{"id":"1"}'
//	micro subscribe events --queue workers
//
// publish sends a JSON message (content-type application/json, which a
// typed micro subscriber decodes into its message type) and returns once
// the broker took it as its delivery promise says; subscribe prints each
// message with its headers (for JSON content, the body as it is).
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	_ "github.com/microgrpc/microgrpc/plugins/all" // --registry=etcd, --broker=nats and jetstream
)

// command is one subcommand.
type command struct {
	name     string
	synopsis string // "micro call [flags] SERVICE METHOD [JSON]"
	summary  string // one line for micro -h
	help     string // what -h says after the synopsis
	minArgs  int
	maxArgs  int
	// flags defines the command's own flags; run reads them through the
	// values it returned.
	flags func(c *cmdline) func(ctx context.Context, c *cmdline) error
}

var commands = []*command{servicesCmd, describeCmd, callCmd, healthCmd, publishCmd, subscribeCmd, watchCmd, gatewayCmd, xdsCmd}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], &stdio{in: os.Stdin, out: os.Stdout, err: os.Stderr})
	stop()
	os.Exit(code)
}

// stdio is where a command reads and writes.
type stdio struct {
	in       io.Reader
	out, err io.Writer
}

// Exit statuses.
const (
	exitOK    = 0
	exitFail  = 1
	exitUsage = 2
)

// run runs the command line args and returns the exit status.
func run(ctx context.Context, args []string, io *stdio) int {
	if len(args) == 0 {
		usage(io.err)
		return exitUsage
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		if len(args) > 1 && args[0] == "help" {
			return run(ctx, []string{args[1], "-h"}, io)
		}
		usage(io.out)
		return exitOK
	}
	for _, cmd := range commands {
		if cmd.name == args[0] {
			return runCommand(ctx, cmd, args[1:], io)
		}
	}
	fmt.Fprintf(io.err, "micro: unknown command %q; run micro -h for the commands\n", args[0])
	return exitUsage
}

func usage(w io.Writer) {
	fmt.Fprint(w, `micro sees, calls, publishes to and watches microgrpc services by name.

Usage:
  micro COMMAND [flags] [arguments]

Commands:
`)
	for _, cmd := range commands {
		fmt.Fprintf(w, "  %-10s %s\n", cmd.name, cmd.summary)
	}
	fmt.Fprint(w, `
Every command takes the flags and MICRO_* environment of services
(--registry, --registry_address, --broker, --broker_address, ...), -o json
for output that scripts read, and -h for its help: micro call -h.

Examples:
  micro services
  micro describe greeter
  micro call greeter greeter.Greeter/Hello '{"name":"John"}'
  micro health greeter
  micro watch greeter --registry=etcd --registry_address=127.0.0.1:2379
`)
}

// usageError is an error in the command line: exit status 2, and a hint
// to run -h.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usageErrorf(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}
