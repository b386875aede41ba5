package main

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

var healthCmd = &command{
	name:     "health",
	synopsis: "micro health [flags] SERVICE",
	summary:  "the health of every node of a service; exit status 1 unless all serve",
	help: `Asks every node of SERVICE, at its own address, for its status in the
standard health service (grpc.health.v1.Health/Check), under the name the
node's registry record gives (a micro service: its own name) or, when the
record names none, for the whole server. The exit status is 0 when every
node says SERVING, and 1 otherwise (NOT_SERVING, unknown to the node's
health service, no health service, or unreachable).

Example:
  micro health greeter`,
	minArgs: 1, maxArgs: 1,
	flags: func(c *cmdline) func(context.Context, *cmdline) error {
		timeout := c.timeoutFlag(10*time.Second, "how long each node has to answer")
		return func(ctx context.Context, c *cmdline) error { return runHealth(ctx, c, *timeout) }
	},
}

// nodeHealth is what a node's health service said.
type nodeHealth struct {
	Node    string `json:"node"`
	Address string `json:"address"`
	// Service is the name checked; "" is the whole server.
	Service string `json:"service"`
	// Status is the answer (SERVING, NOT_SERVING, SERVICE_UNKNOWN,
	// UNKNOWN), or why there is none: UNIMPLEMENTED (no health service),
	// UNREACHABLE.
	Status string `json:"status"`
	Error  string `json:"error,omitempty"`
}

func (h nodeHealth) serving() bool { return h.Status == healthpb.HealthCheckResponse_SERVING.String() }

// text is the status for a table: the status, and why when it is not an
// answer.
func (h nodeHealth) text() string {
	if h.Error == "" {
		return h.Status
	}
	return h.Status + " (" + h.Error + ")"
}

func runHealth(ctx context.Context, c *cmdline, timeout time.Duration) error {
	name := c.args[0]
	lookupCtx, cancel := withTimeout(ctx, timeout)
	defer cancel()
	svcs, _, err := c.getService(lookupCtx, name)
	if err != nil {
		return err
	}
	hs := checkNodes(ctx, nodesOf(svcs), timeout)
	if c.json() {
		if err := c.printJSON(hs); err != nil {
			return err
		}
	} else {
		t := newTable(c.out, "NODE", "ADDRESS", "CHECKED", "STATUS")
		for _, h := range hs {
			checked := h.Service
			if checked == "" {
				checked = `"" (server)`
			}
			t.row(h.Node, h.Address, checked, h.text())
		}
		if err := t.flush(); err != nil {
			return err
		}
	}
	var bad []string
	for _, h := range hs {
		if !h.serving() {
			bad = append(bad, h.Node+" "+h.Status)
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("%d of %d nodes of %s not serving: %s", len(bad), len(hs), name, strings.Join(bad, ", "))
	}
	return nil
}

// checkNodes asks every node at once, each within timeout.
func checkNodes(ctx context.Context, nodes []nodeOf, timeout time.Duration) []nodeHealth {
	out := make([]nodeHealth, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Go(func() { out[i] = checkNode(ctx, n, timeout) })
	}
	wg.Wait()
	return out
}

// checkNode dials the node itself, not the service: the question is about
// this node, and the balancer would hide a node that is not serving.
func checkNode(ctx context.Context, n nodeOf, timeout time.Duration) nodeHealth {
	h := nodeHealth{Node: n.ID, Address: n.Address, Service: n.HealthService}
	cc, err := grpc.NewClient("passthrough:///"+n.Address, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		h.Status, h.Error = "UNREACHABLE", err.Error()
		return h
	}
	defer cc.Close()
	ctx, cancel := withTimeout(ctx, timeout)
	defer cancel()
	rsp, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{Service: n.HealthService})
	switch status.Code(err) {
	case codes.OK:
		h.Status = rsp.GetStatus().String()
	case codes.NotFound:
		h.Status = healthpb.HealthCheckResponse_SERVICE_UNKNOWN.String()
		h.Error = fmt.Sprintf("its health service does not know %q", n.HealthService)
	case codes.Unimplemented:
		h.Status, h.Error = "UNIMPLEMENTED", "no grpc.health.v1.Health service"
	default:
		h.Status, h.Error = "UNREACHABLE", status.Code(err).String()+": "+statusMessage(err)
	}
	return h
}
