package jetstream

import (
	"context"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// inflight is a subscription's deliveries that it received and has not
// answered yet (running, or waiting for a handler slot). Its heartbeat
// tells the server that those still there after a while are in progress
// (InProgress), so that a handler that runs longer than the ack wait is
// not delivered again elsewhere, while a subscriber that dies stops
// telling, and its messages come again after one ack wait.
type inflight struct {
	mu sync.Mutex
	m  map[*delivery]struct{}
}

// delivery is one message in flight.
type delivery struct {
	m    jetstream.Msg
	seen bool // in flight at the last tick; guarded by inflight.mu
}

func (f *inflight) init() { f.m = map[*delivery]struct{}{} }

func (f *inflight) add(m jetstream.Msg) *delivery {
	d := &delivery{m: m}
	f.mu.Lock()
	f.m[d] = struct{}{}
	f.mu.Unlock()
	return d
}

func (f *inflight) remove(d *delivery) {
	f.mu.Lock()
	delete(f.m, d)
	f.mu.Unlock()
}

// heartbeat ticks three times per ack wait until ctx ends; at each tick
// the deliveries that were in flight at the one before are reported in
// progress, so one is reported between a third and two thirds of the ack
// wait after it arrived, and then every third. Deliveries answered within
// a tick cost nothing.
func (f *inflight) heartbeat(ctx context.Context, ackWait time.Duration) {
	t := time.NewTicker(max(ackWait/3, time.Millisecond))
	defer t.Stop()
	var due []jetstream.Msg
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		due = due[:0]
		f.mu.Lock()
		for d := range f.m {
			if d.seen {
				due = append(due, d.m)
			}
			d.seen = true
		}
		f.mu.Unlock()
		for _, m := range due {
			// An error means the connection is down: the server then
			// redelivers after the ack wait, which is what a lost
			// subscriber gets.
			_ = m.InProgress()
		}
		clear(due)
	}
}
