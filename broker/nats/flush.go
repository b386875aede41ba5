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
// commit). A waiting publisher (publish) adds its message to the open
// batch. When no flush is running it takes the batch and flushes it
// itself: writes its messages (one socket write for many, instead of one
// each), then a PING after them, whose PONG says the server processed
// everything before it. While a flush is out, later publishers only join
// the next batch and wait; the flusher goroutine takes over the batches
// that filled meanwhile, until none is left. So a lone publisher pays no
// goroutine hand-off, and under load a batch holds everything published
// during one round trip.
//
// An asynchronous publish (publishAsync) writes its message at once and
// joins the open batch only to learn of the PING after it; the flusher
// goroutine leads those flushes, so the caller never waits.
type flusher struct {
	nc   *natsgo.Conn
	kick chan struct{} // buffer 1: a batch is open
	quit chan struct{}
	wg   sync.WaitGroup

	mu       sync.Mutex
	open     *batch // the batch new publishers join; nil when none
	flushing bool   // a publisher or the flusher goroutine is flushing
	stopped  bool   // stop was called: nothing joins any more
}

// batch is the messages one flush covers; each entry's err and the batch's
// err are set before done is closed.
type batch struct {
	entries []entry
	err     error // the flush's error
	done    chan struct{}
}

type entry struct {
	m     *natsgo.Msg // until written; then recycled
	topic string
	sent  bool       // written before it joined (an asynchronous publish)
	ack   chan error // an asynchronous publish's result; nil for a waiting one
	err   error      // the write's error
}

// result is entry i's outcome once done is closed.
func (b *batch) result(i int) error {
	if e := b.entries[i]; e.err != nil {
		return e.err
	}
	return b.err
}

// finish tells the batch's publishers: the asynchronous ones through
// their channels, the waiting ones by closing done.
func (b *batch) finish() {
	for i, e := range b.entries {
		if e.ack == nil {
			continue
		}
		if err := b.result(i); err != nil {
			e.ack <- publishError(e.topic, err)
		} else {
			e.ack <- nil
		}
	}
	close(b.done)
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
	b, i, lead, ok := f.join(entry{m: m, topic: m.Subject})
	if !ok {
		return natsgo.ErrConnectionClosed
	}
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
			f.wake()
		}
	}
	select {
	case <-b.done:
		return b.result(i)
	case <-ctx.Done():
		return ctx.Err()
	case <-f.quit:
		return natsgo.ErrConnectionClosed
	}
}

// publishAsync writes m and returns at once; ack gets the result of the
// flush after it (nil: the server has it). Written in the caller, the
// messages reach the server while a flush is out, and the next flush
// covers all of them.
func (f *flusher) publishAsync(m *natsgo.Msg, ack chan error) {
	topic := m.Subject
	err := f.nc.PublishMsg(m)
	recycle(m)
	if err != nil {
		ack <- publishError(topic, err)
		return
	}
	_, _, lead, ok := f.join(entry{topic: topic, sent: true, ack: ack})
	switch {
	case !ok:
		ack <- publishError(topic, natsgo.ErrConnectionClosed)
	case lead:
		f.wake()
	}
}

// join adds e to the open batch and reports whether the caller is to lead
// its flush; ok is false once the flusher stopped.
func (f *flusher) join(e entry) (b *batch, i int, lead, ok bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stopped {
		return nil, 0, false, false
	}
	b = f.open
	if b == nil {
		b = &batch{done: make(chan struct{})}
		f.open = b
	}
	i = len(b.entries)
	b.entries = append(b.entries, e)
	lead = !f.flushing
	if lead {
		f.flushing = true
	}
	return b, i, lead, true
}

// wake hands the open batches to the flusher goroutine.
func (f *flusher) wake() {
	select {
	case f.kick <- struct{}{}:
	default:
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

// flush writes a batch's messages not yet written, flushes, and tells its
// publishers.
func (f *flusher) flush(b *batch) {
	written := false
	for i := range b.entries {
		e := &b.entries[i]
		if !e.sent {
			e.err = f.nc.PublishMsg(e.m)
			recycle(e.m)
			e.m = nil
		}
		written = written || e.err == nil
	}
	if written {
		b.err = f.nc.FlushTimeout(flushTimeout)
	}
	b.finish()
}

// fail ends the open batch with err.
func (f *flusher) fail(err error) {
	f.mu.Lock()
	b := f.open
	f.open = nil
	f.mu.Unlock()
	if b != nil {
		b.err = err
		b.finish()
	}
}

// stop ends the flusher goroutine; publishers still waiting get an error.
func (f *flusher) stop() {
	f.mu.Lock()
	f.stopped = true
	f.mu.Unlock()
	close(f.quit)
	f.wg.Wait()
}

// msgs recycles the NATS messages of publishes: nats.go copies a message
// into its buffer while PublishMsg holds it and keeps nothing after, so a
// message and its header map can serve the next publish.
var msgs = sync.Pool{New: func() any { return &natsgo.Msg{Header: natsgo.Header{}} }}

// newMsg returns a message for topic, body and header from the pool. The
// header's value slices are reused for keys that come again, so a stream
// of publishes with the same header keys allocates nothing here.
func newMsg(topic string, body []byte, header map[string]string) *natsgo.Msg {
	m := msgs.Get().(*natsgo.Msg)
	m.Subject, m.Data = topic, body
	for k := range m.Header {
		if _, ok := header[k]; !ok {
			delete(m.Header, k)
		}
	}
	for k, v := range header {
		if old := m.Header[k]; cap(old) > 0 {
			m.Header[k] = append(old[:0], v)
		} else {
			m.Header[k] = []string{v}
		}
	}
	return m
}

// recycle returns a written message to the pool.
func recycle(m *natsgo.Msg) {
	m.Subject, m.Data = "", nil
	msgs.Put(m)
}
