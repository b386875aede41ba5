package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/microgrpc/microgrpc/balancer/randomhash"
	"github.com/microgrpc/microgrpc/micro/dynamic"
)

var callCmd = &command{
	name:     "call",
	synopsis: "micro call [flags] SERVICE METHOD [JSON]",
	summary:  "call a method of a service by name, with JSON request and response",
	help: `Calls METHOD of SERVICE, found in the registry and balanced over its nodes
(random_hash, with its retries), as a call from a service would be. The
method's types are learned from the service through gRPC server
reflection (v1, or v1alpha).

METHOD is named as gRPC sends it, greeter.Greeter/Hello (a leading slash
is allowed), or go-micro's way, Greeter.Hello, when one service of the
server has that short name.

The request is the JSON argument, or -d JSON, -d @FILE, -d - (standard
input). Without one it is {} for unary and server-streaming methods;
client- and bidirectional-streaming methods read one JSON request per line
from standard input (or from the -d data) until its end. Each response is
printed as one line of compact JSON.

Examples:
  micro call greeter greeter.Greeter/Hello '{"name":"John"}'
  micro call greeter Greeter.Hello -d @request.json -H authorization=token
  micro call greeter Greeter.HelloStream '{"name":"John","count":3}'
  printf '{"name":"a"}\n{"name":"b"}\n' | micro call greeter Greeter.Chat
  micro call greeter Greeter.Hello '{}' --node greeter-5f2c --timeout 2s`,
	minArgs: 2, maxArgs: 3,
	flags: func(c *cmdline) func(context.Context, *cmdline) error {
		f := &callFlags{}
		c.fs.StringVar(&f.data, "d", "", "the request instead of the JSON argument: JSON, @FILE, or - for standard input")
		c.fs.Var(&f.headers, "H", "metadata `key=value` sent with the call (repeatable)")
		f.timeout = c.timeoutFlag(30*time.Second, "bounds the call, lookups included; streaming calls have no deadline unless it is given")
		c.fs.StringVar(&f.node, "node", "", "send the call to the node with this `id` only (micro describe lists them)")
		c.fs.StringVar(&f.hash, "hash", "", "send the call to the node this `key` hashes to: the same node for the same key while the nodes stay (micro first connects to every node, for up to 2s)")
		return func(ctx context.Context, c *cmdline) error { return runCall(ctx, c, f) }
	},
}

type callFlags struct {
	data    string
	headers headerFlag
	timeout *time.Duration
	node    string
	hash    string
}

func runCall(ctx context.Context, c *cmdline, f *callFlags) error {
	service, method := c.args[0], c.args[1]
	arg, argGiven := "", len(c.args) == 3
	if argGiven {
		arg = c.args[2]
	}
	data, haveData, err := c.readData(arg, f.data, argGiven)
	if err != nil {
		return err
	}
	lookupCtx, cancel := withTimeout(ctx, *f.timeout)
	defer cancel()
	svcs, _, err := c.getService(lookupCtx, service)
	if err != nil {
		return err
	}
	if f.node != "" {
		var ids []string
		for _, n := range nodesOf(svcs) {
			ids = append(ids, n.ID)
		}
		if !slices.Contains(ids, f.node) {
			return fmt.Errorf("service %s has no node %q (its nodes: %s)", service, f.node, strings.Join(ids, ", "))
		}
	}
	cc, err := c.svc.Conn(service)
	if err != nil {
		return err
	}
	dc := dynamic.NewClient(cc)
	md, err := dc.Method(lookupCtx, method)
	if err != nil {
		return fmt.Errorf("%s: %s", service, statusMessage(err))
	}
	full := dynamic.FullMethod(md)
	streaming := md.IsStreamingClient() || md.IsStreamingServer()
	callCtx := lookupCtx
	if streaming && !c.given("timeout") {
		callCtx = ctx
	}
	for _, kv := range f.headers {
		callCtx = metadata.AppendToOutgoingContext(callCtx, kv[0], kv[1])
	}
	var opts []grpc.CallOption
	if f.node != "" {
		opts = append(opts, randomhash.FilterNode(f.node))
	}
	if c.given("hash") {
		opts = append(opts, randomhash.WithHashKey(f.hash))
		if f.node == "" {
			warmUp(lookupCtx, cc, nodesOf(svcs))
		}
	}
	call := &call{c: c, dc: dc, md: md, service: service, opts: opts}
	switch {
	case md.IsStreamingClient():
		var in io.Reader = c.in
		if haveData {
			in = bytes.NewReader(data)
		}
		return call.clientStream(callCtx, in)
	default:
		if !haveData {
			data = []byte("{}")
		}
		if err := checkJSON("the request", data); err != nil {
			return err
		}
		if md.IsStreamingServer() {
			return call.serverStream(callCtx, data)
		}
		rsp, err := dc.InvokeJSON(callCtx, full, data, opts...)
		if err != nil {
			return call.failed(err)
		}
		return call.print(rsp)
	}
}

// warmUpTime bounds warmUp.
const warmUpTime = 2 * time.Second

// warmUp connects the balancer to every node before a hashed call. The
// balancer hashes a key over the nodes it is connected to, and a new
// process, as micro is on every call, is connected to the first node that
// answered: without this the same key would go wherever the race went,
// not where a long-running client sends it. A cheap call pinned to each
// node (its health check) does it; a node that does not answer within
// warmUpTime is left out, as the balancer would leave it out.
func warmUp(ctx context.Context, cc grpc.ClientConnInterface, nodes []nodeOf) {
	ctx, cancel := context.WithTimeout(ctx, warmUpTime)
	defer cancel()
	hc := healthpb.NewHealthClient(cc)
	var wg sync.WaitGroup
	for _, n := range nodes {
		wg.Go(func() {
			// Any answer, an error included, means the node was picked.
			_, _ = hc.Check(ctx, &healthpb.HealthCheckRequest{Service: n.HealthService}, randomhash.FilterNode(n.ID))
		})
	}
	wg.Wait()
}

// call is one call of a method.
type call struct {
	c       *cmdline
	dc      *dynamic.Client
	md      protoreflect.MethodDescriptor
	service string
	opts    []grpc.CallOption
}

// failed says which call failed and how: the status code and message of
// the server (or of the balancer), or what is wrong with the request.
func (k *call) failed(err error) error {
	if errors.Is(err, dynamic.ErrBadRequest) {
		return errors.New(statusMessage(err))
	}
	st := status.Convert(err)
	return fmt.Errorf("%s on %s failed: %s: %s", strings.TrimPrefix(dynamic.FullMethod(k.md), "/"), k.service, st.Code(), st.Message())
}

func (k *call) print(js []byte) error {
	_, err := fmt.Fprintf(k.c.out, "%s\n", js)
	return err
}

func (k *call) serverStream(ctx context.Context, req []byte) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := k.dc.NewStream(ctx, dynamic.FullMethod(k.md), k.opts...)
	if err != nil {
		return k.failed(err)
	}
	if err := st.SendJSON(req); err != nil && !errors.Is(err, io.EOF) {
		return k.failed(err)
	}
	if err := st.CloseSend(); err != nil {
		return k.failed(err)
	}
	return k.receive(st)
}

// receive prints responses until the end of the call.
func (k *call) receive(st *dynamic.Stream) error {
	for {
		js, err := st.RecvJSON()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return k.failed(err)
		}
		if err := k.print(js); err != nil {
			return err
		}
	}
}

// clientStream sends the JSON requests read from in while printing the
// responses (bidirectional) or, after the last request, the response.
func (k *call) clientStream(ctx context.Context, in io.Reader) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := k.dc.NewStream(ctx, dynamic.FullMethod(k.md), k.opts...)
	if err != nil {
		return k.failed(err)
	}
	sendErr := make(chan error, 1)
	go func() {
		err := k.send(st, in)
		sendErr <- err // before cancel: receive then returns with it there
		if err != nil {
			cancel() // the call must not complete without all its requests
		}
	}()
	recvErr := k.receive(st)
	select {
	case err := <-sendErr:
		if err != nil {
			return err
		}
	default:
		// Still reading the input (a terminal, say) when the server ended
		// the call: the call is over all the same.
	}
	return recvErr
}

// send sends the JSON values read from in, then closes the sending side.
// A value may span lines; one per line is the usual form.
func (k *call) send(st *dynamic.Stream, in io.Reader) error {
	dec := json.NewDecoder(bufio.NewReader(in))
	for n := 1; ; n++ {
		var raw json.RawMessage
		err := dec.Decode(&raw)
		if errors.Is(err, io.EOF) {
			return st.CloseSend()
		}
		if err != nil {
			return fmt.Errorf("request %d of the input is not valid JSON: %v", n, err)
		}
		if err := st.SendJSON(raw); err != nil {
			if errors.Is(err, io.EOF) {
				return nil // the call ended; receive reports how
			}
			if errors.Is(err, dynamic.ErrBadRequest) {
				return fmt.Errorf("request %d of the input: %s", n, statusMessage(err))
			}
			return k.failed(err)
		}
	}
}
