package pubsub_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/microgrpc/microgrpc/internal/exampletest"
	"github.com/microgrpc/microgrpc/internal/natstest"
	"github.com/microgrpc/microgrpc/internal/netns"
)

func TestMain(m *testing.M) { netns.VerifyTestMain(m) }

func TestPublisherAndSubscribers(t *testing.T) {
	subBin := exampletest.Build(t, "./subscriber")
	all := exampletest.Start(t, subBin, nil)
	w1 := exampletest.Start(t, subBin, nil, "-queue", "workers")
	w2 := exampletest.Start(t, subBin, nil, "-queue", "workers")
	for _, p := range []*exampletest.Process{all, w1, w2} {
		p.WaitFor("service started")
	}
	const n = 10
	pub := exampletest.Start(t, exampletest.Build(t, "./publisher"), nil, "-count", fmt.Sprint(n), "-interval", "200ms")
	if err := pub.Wait(); err != nil {
		t.Fatalf("publisher: %v\n%s", err, pub.Output())
	}
	if got := strings.Count(pub.Output(), "published "); got != n {
		t.Fatalf("publisher published %d of %d:\n%s", got, n, pub.Output())
	}
	// http delivery is synchronous: every published event was handled. The
	// subscribers' output reaches us through pipes, a moment later.
	deadline := time.Now().Add(10 * time.Second)
	for i := 1; i <= n; i++ {
		line := fmt.Sprintf("received %d ", i)
		handled := func() int { return strings.Count(w1.Output(), line) + strings.Count(w2.Output(), line) }
		for (!strings.Contains(all.Output(), line) || handled() == 0) && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if !strings.Contains(all.Output(), line) {
			t.Errorf("plain subscriber missed event %d", i)
		}
		if c := handled(); c != 1 {
			t.Errorf("event %d handled %d times by the queue group, want once", i, c)
		}
	}
	if !strings.Contains(all.Output(), "[example]") {
		t.Errorf("metadata did not travel:\n%s", all.Output())
	}
	for _, p := range []*exampletest.Process{all, w1, w2} {
		if err := p.Stop(); err != nil {
			t.Errorf("subscriber stop: %v\n%s", err, p.Output())
		}
	}
}

// With --broker=jetstream the events wait in a stream: published while no
// subscriber runs, they are all handled by one started afterwards, and a
// restarted subscriber does not see them again.
func TestJetStreamKeepsEventsForLateSubscribers(t *testing.T) {
	srv, err := natstest.StartJetStream(t.TempDir(), -1)
	if err != nil {
		t.Fatal(err)
	}
	defer natstest.Stop(srv)
	flags := []string{"--broker=jetstream", "--broker_address=" + srv.ClientURL()}
	const n = 5
	pub := exampletest.Start(t, exampletest.Build(t, "./publisher"), nil, append(flags, "-count", fmt.Sprint(n), "-interval", "50ms")...)
	if err := pub.Wait(); err != nil {
		t.Fatalf("publisher: %v\n%s", err, pub.Output())
	}
	subBin := exampletest.Build(t, "./subscriber")
	sub := exampletest.Start(t, subBin, nil, flags...)
	for i := 1; i <= n; i++ {
		sub.WaitFor(fmt.Sprintf("received %d ", i))
	}
	if err := sub.Stop(); err != nil {
		t.Fatalf("subscriber stop: %v\n%s", err, sub.Output())
	}
	// The service's durable consumer remembers where it was.
	again := exampletest.Start(t, subBin, nil, flags...)
	again.WaitFor("service started")
	pub2 := exampletest.Start(t, exampletest.Build(t, "./publisher"), nil, append(flags, "-count", "1", "-interval", "50ms")...)
	if err := pub2.Wait(); err != nil {
		t.Fatalf("publisher: %v\n%s", err, pub2.Output())
	}
	again.WaitFor("received 1 ")
	if err := again.Stop(); err != nil {
		t.Fatal(err)
	}
	if got := strings.Count(again.Output(), "received "); got != 1 {
		t.Fatalf("restarted subscriber handled %d events, want only the new one:\n%s", got, again.Output())
	}
}
