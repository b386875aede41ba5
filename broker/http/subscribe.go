package http

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"

	"github.com/microgrpc/microgrpc/broker"
)

// envelope is a message on the wire.
type envelope struct {
	Topic  string            `json:"topic"`
	Header map[string]string `json:"header,omitempty"`
	Body   []byte            `json:"body"`
}

type subscription struct {
	b     *httpBroker
	id    string
	topic string
	opts  broker.SubscribeOptions
	h     broker.Handler

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

// deliver runs the handler unless the subscription stopped; a stopped
// subscription refuses, so the publisher tries another member.
func (s *subscription) deliver(ctx context.Context, m *broker.Message) error {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return errGone
	}
	s.inflight.Add(1)
	s.mu.Unlock()
	defer s.inflight.Done()
	return broker.Invoke(ctx, s.h, s.topic, m, s.opts.AutoAck)
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
	s := &subscription{b: b, id: fmt.Sprintf("%s-%d", b.id, b.nextSub), topic: topic, opts: broker.NewSubscribeOptions(opts...), h: h}
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

// serveHTTP takes one delivery: 204 when the handler accepted it, 500 with
// the handler's error, 404 for an unknown subscription, 413 when too large.
func (b *httpBroker) serveHTTP(w http.ResponseWriter, r *http.Request) {
	id := r.URL.Query().Get("sub")
	b.mu.Lock()
	s := b.subs[id]
	b.mu.Unlock()
	if s == nil {
		http.Error(w, "no such subscription", http.StatusNotFound)
		return
	}
	// JSON carries the body in base64: allow for it, then check exactly.
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, int64(b.opts.maxSize)*4/3+64<<10))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			http.Error(w, broker.ErrMessageTooLarge.Error(), http.StatusRequestEntityTooLarge)
			return
		}
		http.Error(w, "read: "+err.Error(), http.StatusBadRequest)
		return
	}
	var env envelope
	if err := json.Unmarshal(body, &env); err != nil || env.Topic != s.topic {
		http.Error(w, "malformed delivery", http.StatusBadRequest)
		return
	}
	m := &broker.Message{Header: env.Header, Body: env.Body}
	if err := broker.CheckSize(env.Topic, m, b.opts.maxSize); err != nil {
		http.Error(w, err.Error(), http.StatusRequestEntityTooLarge)
		return
	}
	if err := s.deliver(r.Context(), m); err != nil {
		if errors.Is(err, errGone) {
			http.Error(w, "subscription gone", http.StatusNotFound)
			return
		}
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
