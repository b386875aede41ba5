package mdns_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/microgrpc/microgrpc/resolver"
)

// A watcher whose context ends while Watch is still adding it must not stay
// registered with the browser: nothing would ever read its queue, which
// would then grow with every sighting for the life of the registry.
func TestStoppedWatchersAreForgotten(t *testing.T) {
	reg := newRegistry(t)
	tctx := ctx(t)
	// 10,000 watchers, in rounds of 1,000 so that the goroutines alive at
	// once stay under the race detector's limit.
	const rounds, perRound = 10, 1000
	for range rounds {
		var wg sync.WaitGroup
		for i := range perRound {
			wctx, cancel := context.WithCancel(tctx)
			if i%2 == 0 {
				cancel() // already over when Watch begins
			}
			start := make(chan struct{})
			// Otherwise cancel concurrently with Watch, so that the context
			// ends at every point of it.
			wg.Go(func() {
				<-start
				cancel()
			})
			wg.Go(func() {
				close(start)
				w, err := reg.Watch(wctx, resolver.WatchService("leak"))
				if err != nil {
					return // nothing registered
				}
				if i%4 == 1 {
					w.Stop()
				}
			})
		}
		wg.Wait()
	}
	// Watchers stopped by their context go asynchronously: poll.
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		got := reg.WatcherCount()
		if got == 0 {
			return
		}
		select {
		case <-tctx.Done():
			t.Fatalf("%d of %d stopped watchers are still registered", got, rounds*perRound)
		case <-tick.C:
		}
	}
}
