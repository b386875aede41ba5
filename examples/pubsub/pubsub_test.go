package pubsub_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/microgrpc/microgrpc/internal/exampletest"
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
	// http delivery is synchronous: every published event was handled.
	for i := 1; i <= n; i++ {
		line := fmt.Sprintf("received %d ", i)
		if !strings.Contains(all.Output(), line) {
			t.Errorf("plain subscriber missed event %d", i)
		}
		c := strings.Count(w1.Output(), line) + strings.Count(w2.Output(), line)
		if c != 1 {
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
