package e2e

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/microgrpc/microgrpc/internal/etcdtest"
	"github.com/microgrpc/microgrpc/internal/exampletest"
	"github.com/microgrpc/microgrpc/micro"
	"github.com/microgrpc/microgrpc/micro/pubsub"
	pb "github.com/microgrpc/microgrpc/proto/greeter"
)

// envSubscriber, when set, makes the test binary a queue subscriber
// process named by its value.
const envSubscriber = "MICROGRPC_E2E_SUBSCRIBER"

// runSubscriber is a member of queue group "workers" of topic "jobs" over
// the http broker, registered in etcd; it prints "handled ID" for every
// message it handled, before acknowledging it, until SIGTERM (or five
// minutes, should the test die).
func runSubscriber() int {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	svc := micro.NewService(micro.WithName("worker"), micro.WithID(os.Getenv(envSubscriber)),
		micro.WithAddress("127.0.0.1:0"), micro.WithRegistryPlugin("etcd", os.Getenv(envEtcd)),
		micro.WithContext(ctx), micro.WithLogger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))),
		micro.WithAfterStart(func(context.Context) error { fmt.Println("ready"); return nil }))
	err := pubsub.RegisterSubscriber("jobs", svc, func(_ context.Context, ev *pb.Event) error {
		// Unbuffered: a line printed is a message handled, even if the
		// process is killed right after.
		fmt.Fprintf(os.Stdout, "handled %s\n", ev.GetId())
		return nil
	}, pubsub.WithQueue("workers"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := svc.Run(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// One of three queue-group subscriber processes killed with SIGKILL while
// 8 publishers publish: every message whose Publish returned nil was
// handled by some member (duplicates, a message handled by the killed one
// whose answer never came back and so was sent to another, are counted
// and allowed).
func TestQueueMemberKilledNothingAcknowledgedLost(t *testing.T) {
	etcd, err := etcdtest.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(etcd.Close) // after the processes' cleanups: they deregister
	var members []*exampletest.Process
	for _, id := range []string{"w1", "w2", "w3"} {
		p := exampletest.Start(t, os.Args[0], []string{envSubscriber + "=" + id, envEtcd + "=" + etcd.Endpoint()}, "-test.run=^$")
		p.WaitFor("ready")
		members = append(members, p)
	}
	pub := micro.NewService(micro.WithName("boss"), micro.WithRegistryPlugin("etcd", etcd.Endpoint()),
		micro.WithLogger(slog.New(slog.DiscardHandler)))
	defer pub.Close()
	publisher := pubsub.NewPublisher("jobs", pub)

	var (
		mu      sync.Mutex
		acked   []string
		failed  int
		next    atomic.Int64
		stop    atomic.Bool
		wg      sync.WaitGroup
		counted atomic.Int64
	)
	for range 8 {
		wg.Go(func() {
			for !stop.Load() {
				id := fmt.Sprint(next.Add(1))
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				err := publisher.Publish(ctx, &pb.Event{Id: id})
				cancel()
				mu.Lock()
				if err == nil {
					acked = append(acked, id)
				} else {
					failed++
				}
				mu.Unlock()
				counted.Add(1)
			}
		})
	}
	waitCount := func(n int64) {
		deadline := time.Now().Add(30 * time.Second)
		for counted.Load() < n && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitCount(500)
	members[0].Kill()
	killedAt := counted.Load()
	waitCount(killedAt + 1500)
	stop.Store(true)
	wg.Wait()
	// Their output is complete only once they exit: a line written just
	// before the last acknowledgement may still be in the pipe.
	for _, m := range members[1:] {
		if err := m.Stop(); err != nil {
			t.Errorf("member stopped with %v", err)
		}
	}
	handled := map[string]int{}
	for _, m := range members {
		for _, line := range strings.Split(m.Output(), "\n") {
			if id, ok := strings.CutPrefix(line, "handled "); ok {
				handled[id]++
			}
		}
	}
	lost, dups := 0, 0
	for _, id := range acked {
		if handled[id] == 0 {
			lost++
		}
	}
	for _, n := range handled {
		if n > 1 {
			dups += n - 1
		}
	}
	t.Logf("%d published, %d acknowledged, %d failed, %d handled (%d duplicates), killed after %d", next.Load(), len(acked), failed, len(handled), dups, killedAt)
	if lost > 0 {
		t.Fatalf("%d acknowledged messages were never handled", lost)
	}
	if len(acked) < 1000 {
		t.Fatalf("only %d publishes succeeded: the surviving members did not take over", len(acked))
	}
}
