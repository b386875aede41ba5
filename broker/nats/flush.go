package nats

import (
	"context"
	"runtime"
	"sync"
	"time"

	natsgo "github.com/nats-io/nats.go"
)

// flusher publishes for concurrent publishers and proves to them that the
// server has their messages with one round trip for all of them (group
// commit). A publisher adds its message to the open batch. When no flush
// is running it takes the batch and flushes it itself: writes its messages
// (one socket write for many, instead of one each), then a PING after
// them, whose PONG says the server processed everything before it. While a
// flush is out, later publishers only join the next batch and wait; the
// flusher goroutine takes over the batches that filled meanwhile, until
// none is left. So a lone publisher pays no goroutine hand-off, and under
// load a batch holds everything published during one round trip.
type flusher struct {
	nc   *natsgo.Conn
	kick chan struct{} // buffer 1: a batch is open
	quit chan struct{}
	wg   sync.WaitGroup

	mu       sync.Mutex
	open     *batch // the batch new publishers join; nil when none
	flushing bool   // a publisher or the flusher goroutine is flushing
}

// batch is the messages one flush covers; errs and err are set before done
// is closed.
type batch struct {
	msgs []*natsgo.Msg
	errs []error // per message: the write's error
	err  error   // the flush's error
	done chan struct{}
}

// flushTimeout bounds one flush; a publisher's own ctx may end sooner.
const flushTimeout = 10 * time.Second

func newFlusher(nc *natsgo.Conn) *flusher {
	f := &flusher{nc: nc, kick: make(chan struct{}, 1), quit: make(chan struct{})}
	f.wg.Add(1)
	go f.run()
	return f
}

// publish queues m and returns once a flush covered it (nil: the server
// has it), or ctx ends.
func (f *flusher) publish(ctx context.Context, m *natsgo.Msg) error {
	f.mu.Lock()
	b := f.open
	if b == nil {
		b = &batch{done: make(chan struct{})}
		f.open = b
	}
	i := len(b.msgs)
	b.msgs = append(b.msgs, m)
	lead := !f.flushing
	if lead {
		f.flushing = true
	}
	f.mu.Unlock()
	if lead {
		// Let the publishers that are ready join the batch first: a
		// round trip costs far more than a yield.
		runtime.Gosched()
		f.mu.Lock()
		f.open = nil
		f.mu.Unlock()
		f.flush(b)
		f.mu.Lock()
		more := f.open != nil
		if !more {
			f.flushing = false
		}
		f.mu.Unlock()
		if more {
			select {
			case f.kick <- struct{}{}:
			default:
			}
		}
	}
	select {
	case <-b.done:
		if b.errs[i] != nil {
			return b.errs[i]
		}
		return b.err
	case <-ctx.Done():
		return ctx.Err()
	case <-f.quit:
		return natsgo.ErrConnectionClosed
	}
}

func (f *flusher) run() {
	defer f.wg.Done()
	for {
		select {
		case <-f.quit:
			f.fail(natsgo.ErrConnectionClosed)
			return
		case <-f.kick:
		}
		for {
			f.mu.Lock()
			b := f.open
			f.open = nil
			if b == nil {
				f.flushing = false
			}
			f.mu.Unlock()
			if b == nil {
				break
			}
			f.flush(b)
		}
	}
}

// flush writes a batch's messages, flushes, and tells its publishers.
func (f *flusher) flush(b *batch) {
	b.errs = make([]error, len(b.msgs))
	written := false
	for i, m := range b.msgs {
		if b.errs[i] = f.nc.PublishMsg(m); b.errs[i] == nil {
			written = true
		}
	}
	if written {
		b.err = f.nc.FlushTimeout(flushTimeout)
	}
	close(b.done)
}

// fail ends the open batch with err.
func (f *flusher) fail(err error) {
	f.mu.Lock()
	b := f.open
	f.open = nil
	f.mu.Unlock()
	if b != nil {
		b.errs = make([]error, len(b.msgs))
		b.err = err
		close(b.done)
	}
}

// stop ends the flusher goroutine; publishers still waiting get an error.
func (f *flusher) stop() {
	close(f.quit)
	f.wg.Wait()
}
