package http

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"

	"github.com/microgrpc/microgrpc/broker"
	"github.com/microgrpc/microgrpc/broker/internal/limit"
)

type subscription struct {
	b     *httpBroker
	id    string
	topic string
	opts  broker.SubscribeOptions
	h     broker.Handler
	limit limit.Limiter

	mu       sync.Mutex
	stopped  bool
	inflight sync.WaitGroup
}

func (s *subscription) Topic() string { return s.topic }
func (s *subscription) Queue() string { return s.opts.Queue }

// Unsubscribe deregisters the subscription, then waits within ctx for the
// deliveries in progress.
func (s *subscription) Unsubscribe(ctx context.Context) error {
	s.b.mu.Lock()
	delete(s.b.subs, s.id)
	s.b.mu.Unlock()
	s.mu.Lock()
	already := s.stopped
	s.stopped = true
	s.mu.Unlock()
	if already {
		return nil
	}
	err := s.b.deregister(ctx, s)
	done := make(chan struct{})
	go func() { s.inflight.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		err = errors.Join(err, fmt.Errorf("http broker: deliveries still running: %w", ctx.Err()))
	}
	return err
}

// deliver runs the handler, within the subscription's concurrency bound,
// unless the subscription stopped; a stopped subscription refuses, so the
// publisher tries another member.
func (s *subscription) deliver(ctx context.Context, m *broker.Message) error {
	if !s.hold() {
		return errGone
	}
	defer s.inflight.Done()
	if err := s.limit.Acquire(ctx); err != nil {
		return err
	}
	defer s.limit.Release()
	return broker.Invoke(ctx, s.h, s.topic, m, s.opts.AutoAck)
}

// hold counts a delivery in progress (Unsubscribe waits for it) unless the
// subscription stopped; the caller calls s.inflight.Done when it is over.
func (s *subscription) hold() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return false
	}
	s.inflight.Add(1)
	return true
}

var errGone = errors.New("subscription gone")

// Subscribe registers the subscription and starts taking deliveries. The
// broker must be connected.
func (b *httpBroker) Subscribe(topic string, h broker.Handler, opts ...broker.SubscribeOption) (broker.Subscriber, error) {
	if err := broker.ValidateTopic(topic); err != nil {
		return nil, err
	}
	b.mu.Lock()
	switch {
	case b.closed:
		b.mu.Unlock()
		return nil, broker.ErrClosed
	case !b.connected:
		b.mu.Unlock()
		return nil, broker.ErrNotConnected
	}
	b.nextSub++
	o := broker.NewSubscribeOptions(opts...)
	s := &subscription{b: b, id: fmt.Sprintf("%s-%d", b.id, b.nextSub), topic: topic, opts: o, h: h, limit: limit.New(o.MaxConcurrent)}
	b.subs[s.id] = s
	b.mu.Unlock()
	if err := b.register(b.ctx, s); err != nil {
		b.mu.Lock()
		delete(b.subs, s.id)
		b.mu.Unlock()
		return nil, fmt.Errorf("http broker: announce subscription to %q: %w", topic, err)
	}
	return s, nil
}

// maxRequestBytes bounds a delivery request's body.
func (b *httpBroker) maxRequestBytes() int64 {
	return int64(max(maxBatchBytes, b.opts.maxSize)) + batchFrameSlack
}

// serveHTTP takes one batch of deliveries for one subscription and answers
// 200 with one result per message; the whole request fails with 404 for an
// unknown subscription, 413 when too large, 400 when unreadable. Messages
// of a batch are handled concurrently within the subscription's bound, in
// order when the bound is 1.
func (b *httpBroker) serveHTTP(w http.ResponseWriter, r *http.Request) {
	id := r.URL.Query().Get("sub")
	b.mu.Lock()
	s := b.subs[id]
	b.mu.Unlock()
	if s == nil || !s.hold() {
		http.Error(w, "no such subscription", http.StatusNotFound)
		return
	}
	// Held until the answer is written: Disconnect closes the endpoint
	// only after every answer went out.
	defer s.inflight.Done()
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, b.maxRequestBytes()))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			http.Error(w, broker.ErrMessageTooLarge.Error(), http.StatusRequestEntityTooLarge)
			return
		}
		http.Error(w, "read: "+err.Error(), http.StatusBadRequest)
		return
	}
	batch, err := decodeBatch(body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	results := make([]result, len(batch))
	run := func(i int) {
		results[i] = s.handle(r.Context(), batch[i])
	}
	if len(batch) == 1 || s.opts.MaxConcurrent == 1 {
		for i := range batch {
			run(i)
		}
	} else {
		var wg sync.WaitGroup
		for i := range batch {
			wg.Go(func() { run(i) })
		}
		wg.Wait()
	}
	out := make([]byte, 0, 8*len(results))
	for _, res := range results {
		out = appendResult(out, res)
	}
	w.Header().Set("Content-Type", contentType)
	w.WriteHeader(http.StatusOK)
	w.Write(out)
}

// maxErrorText bounds the handler error text sent back to a publisher.
const maxErrorText = 1024

// handle delivers one message of a batch and turns the outcome into its
// result.
func (s *subscription) handle(ctx context.Context, d delivery) result {
	if d.topic != s.topic {
		return result{code: codeMalformed, err: fmt.Sprintf("message for topic %q sent to a subscription of %q", d.topic, s.topic)}
	}
	if err := broker.CheckSize(d.topic, d.msg, s.b.opts.maxSize); err != nil {
		return result{code: codeTooLarge, err: err.Error()}
	}
	err := s.deliver(ctx, d.msg)
	switch {
	case err == nil:
		return result{code: codeOK}
	case errors.Is(err, errGone):
		return result{code: codeGone, err: err.Error()}
	}
	text := err.Error()
	if len(text) > maxErrorText {
		text = text[:maxErrorText] + "..."
	}
	return result{code: codeRefused, err: text}
}
