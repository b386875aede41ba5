package e2e

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/microgrpc/microgrpc/internal/etcdtest"
	"github.com/microgrpc/microgrpc/internal/exampletest"
	"github.com/microgrpc/microgrpc/internal/greetertest"
	"github.com/microgrpc/microgrpc/micro"
	pb "github.com/microgrpc/microgrpc/proto/greeter"
)

// Environment of a node process (the test binary itself).
const (
	envNode = "MICROGRPC_E2E_NODE" // the node id; set: run as a node
	envEtcd = "MICROGRPC_E2E_ETCD"
)

// runNode is a greeter node registered in etcd, until SIGTERM (or five
// minutes, should the test die).
func runNode() int {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	svc := micro.NewService(micro.WithName("greeter"), micro.WithID(os.Getenv(envNode)),
		micro.WithAddress("127.0.0.1:0"), micro.WithRegistryPlugin("etcd", os.Getenv(envEtcd)),
		micro.WithContext(ctx), micro.WithLogger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))),
		micro.WithAfterStart(func(context.Context) error { fmt.Println("ready"); return nil }))
	pb.RegisterGreeterServer(svc.Server(), &greetertest.Server{Node: svc.ID()})
	if err := svc.Run(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// startNode runs the test binary again as node id, and waits until it
// is registered.
func startNode(t *testing.T, id, etcdAddr string) *exampletest.Process {
	t.Helper()
	n := exampletest.Start(t, os.Args[0], []string{envNode + "=" + id, envEtcd + "=" + etcdAddr}, "-test.run=^$")
	n.WaitFor("ready")
	return n
}

// outcome is one call: when it started, whether it failed, who answered.
type outcome struct {
	start  time.Time
	failed bool
	code   codes.Code
	node   string
}

// A node that stops answering without closing its connections (SIGSTOP)
// among three, with 8 callers and a 2 s deadline per call: at most one
// second's worth of calls fail, the node gets no new calls from 5 s after
// the freeze on, and after SIGCONT it is back in rotation.
func TestFrozenNodeAmongThree(t *testing.T) {
	if testing.Short() {
		t.Skip("takes about 30 s")
	}
	etcd, err := etcdtest.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(etcd.Close) // after the nodes' cleanups: they deregister
	nodes := map[string]*exampletest.Process{}
	for _, id := range []string{"n1", "n2", "n3"} {
		nodes[id] = startNode(t, id, etcd.Endpoint())
	}
	client := micro.NewService(micro.WithName("client"), micro.WithRegistryPlugin("etcd", etcd.Endpoint()),
		micro.WithLogger(slog.New(slog.DiscardHandler)))
	defer client.Close()
	greeter := pb.NewGreeterClient(client.Dial("greeter"))

	const callers = 8
	var (
		mu       sync.Mutex
		outcomes []outcome
		stop     atomic.Bool
		wg       sync.WaitGroup
	)
	for range callers {
		wg.Go(func() {
			for !stop.Load() {
				start := time.Now()
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				rsp, err := greeter.Hello(ctx, &pb.Request{Name: "e2e"})
				cancel()
				o := outcome{start: start, failed: err != nil, code: status.Code(err), node: rsp.GetNode()}
				mu.Lock()
				outcomes = append(outcomes, o)
				mu.Unlock()
				if err != nil && status.Code(err) != codes.DeadlineExceeded {
					time.Sleep(10 * time.Millisecond) // do not spin on a fast error
				}
			}
		})
	}
	defer func() { stop.Store(true); wg.Wait() }()

	// Warm up until every node has answered.
	deadline := time.Now().Add(30 * time.Second)
	for {
		mu.Lock()
		seen := map[string]bool{}
		for _, o := range outcomes {
			seen[o.node] = !o.failed
		}
		mu.Unlock()
		if seen["n1"] && seen["n2"] && seen["n3"] {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not every node answered during warm-up: %v", seen)
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(time.Second)
	const frozenID = "n2"
	frozen := nodes[frozenID]
	freeze := time.Now()
	frozen.Signal(syscall.SIGSTOP)
	time.Sleep(10 * time.Second)
	thaw := time.Now()
	frozen.Signal(syscall.SIGCONT)
	// Back in rotation: calls started after the thaw reach it again.
	var back time.Duration
	for back == 0 {
		if time.Since(thaw) > 30*time.Second {
			t.Fatal("the node was not back in rotation 30 s after SIGCONT")
		}
		time.Sleep(100 * time.Millisecond)
		mu.Lock()
		for _, o := range outcomes {
			if o.node == frozenID && o.start.After(thaw) {
				back = o.start.Sub(thaw)
				break
			}
		}
		mu.Unlock()
	}
	stop.Store(true)
	wg.Wait()

	// Rate before the freeze, to say what "one second's worth" is.
	var before, failed, lateFailed, lateToFrozen int
	var lastFail time.Duration
	for _, o := range outcomes {
		switch {
		case o.start.Before(freeze) && o.start.After(freeze.Add(-time.Second)):
			before++
		}
		if o.start.After(freeze) && o.start.Before(thaw) {
			if o.failed {
				failed++
				lastFail = max(lastFail, o.start.Sub(freeze))
			}
			if o.start.After(freeze.Add(5 * time.Second)) {
				if o.failed {
					lateFailed++
				}
				if o.node == frozenID {
					lateToFrozen++
				}
			}
		}
	}
	t.Logf("%d calls/s before the freeze; during the 10 s freeze %d failed (the last started %v after it); "+
		"%d calls failed and %d reached the node after 5 s; back in rotation %v after SIGCONT",
		before, failed, lastFail.Round(time.Millisecond), lateFailed, lateToFrozen, back.Round(time.Millisecond))
	if failed > before {
		t.Errorf("%d calls failed during the freeze, more than one second's worth (%d)", failed, before)
	}
	if lateFailed > 0 || lateToFrozen > 0 {
		t.Errorf("after 5 s of freeze: %d calls failed, %d reached the frozen node; want none", lateFailed, lateToFrozen)
	}
}
