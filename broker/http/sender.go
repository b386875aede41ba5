package http

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/microgrpc/microgrpc/broker"
	"github.com/microgrpc/microgrpc/resolver"
)

// sender delivers to one remote subscription. Publishes that overlap in
// time travel together: each is queued, and up to maxInflight requests
// each take everything queued so far (up to the batch limits) as one
// request whose answer acknowledges every message on its own. While the
// requests are out, the queue fills, so batches grow with the load and a
// lone publisher still sends at once.
type sender struct {
	b   *httpBroker
	url string

	mu       sync.Mutex
	queue    []*pending
	inflight int
	lastUsed int64 // unix nanoseconds; guarded by mu
}

// pending is one message waiting for its result.
type pending struct {
	ctx  context.Context // the publisher's; a message whose publisher gave up is not sent
	d    delivery
	size int
	done chan error // buffered: the sender never blocks on it
}

const (
	maxInflight     = 4
	maxBatchCount   = 256
	maxBatchBytes   = 4 << 20
	batchFrameSlack = 64 << 10 // framing and headers on top of the bodies
)

func newSender(b *httpBroker, n resolver.Node) *sender {
	scheme := n.Metadata["scheme"]
	if scheme != "https" {
		scheme = "http"
	}
	u := url.URL{Scheme: scheme, Host: n.Address, Path: path, RawQuery: "sub=" + url.QueryEscape(n.ID)}
	return &sender{b: b, url: u.String()}
}

// sender returns the sender for a remote subscription, made on first use.
func (b *httpBroker) sender(n resolver.Node) *sender {
	key := n.ID + "@" + n.Address
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.senders[key]
	if s == nil {
		s = newSender(b, n)
		b.senders[key] = s
	}
	return s
}

func (s *sender) idleSince(cutoff int64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.inflight == 0 && len(s.queue) == 0 && s.lastUsed < cutoff
}

// enqueue queues one delivery; wait for its result with pending.wait.
func (s *sender) enqueue(ctx context.Context, d delivery) *pending {
	p := &pending{ctx: ctx, d: d, size: d.msg.Size(), done: make(chan error, 1)}
	s.mu.Lock()
	s.queue = append(s.queue, p)
	s.lastUsed = time.Now().UnixNano()
	start := s.inflight < maxInflight
	if start {
		s.inflight++
	}
	s.mu.Unlock()
	if start {
		s.start()
	}
	return p
}

// wait returns the delivery's result, or ctx's error.
func (p *pending) wait() error {
	select {
	case err := <-p.done:
		return err
	case <-p.ctx.Done():
		return p.ctx.Err()
	}
}

// start starts a request loop, owned by the broker (Disconnect waits for
// it), unless the broker is closed: then everything queued fails.
func (s *sender) start() {
	s.b.mu.Lock()
	ok := !s.b.closed
	if ok {
		s.b.wg.Add(1)
	}
	s.b.mu.Unlock()
	if ok {
		go s.loop()
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.inflight--
	for _, p := range s.queue {
		p.done <- broker.ErrClosed
	}
	clear(s.queue)
	s.queue = s.queue[:0]
}

// loop sends batches until the queue is empty.
func (s *sender) loop() {
	defer s.b.wg.Done()
	for {
		batch := s.take()
		if batch == nil {
			return
		}
		s.post(batch)
	}
}

// take removes the next batch from the queue, skipping messages whose
// publisher already gave up; nil (and one request slot less) when the
// queue is empty.
func (s *sender) take() []*pending {
	s.mu.Lock()
	defer s.mu.Unlock()
	var batch []*pending
	size := 0
	i := 0
	for ; i < len(s.queue) && len(batch) < maxBatchCount; i++ {
		p := s.queue[i]
		if p.ctx.Err() != nil {
			p.done <- p.ctx.Err()
			continue
		}
		if len(batch) > 0 && size+p.size > maxBatchBytes {
			break
		}
		batch = append(batch, p)
		size += p.size
	}
	n := copy(s.queue, s.queue[i:])
	clear(s.queue[n:])
	s.queue = s.queue[:n]
	if len(batch) == 0 {
		s.inflight--
	}
	return batch
}

// post sends one batch and hands each message its result.
func (s *sender) post(batch []*pending) {
	results, err := s.request(batch)
	for i, p := range batch {
		switch {
		case err != nil:
			p.done <- err
		case i < len(results):
			p.done <- results[i].error()
		default:
			p.done <- fmt.Errorf("http broker: subscriber answered %d results for %d messages", len(results), len(batch))
		}
	}
}

func (s *sender) request(batch []*pending) ([]result, error) {
	size := 0
	for _, p := range batch {
		size += p.size + 64
	}
	body := make([]byte, 0, size)
	for _, p := range batch {
		body = appendDelivery(body, p.d)
	}
	ctx, cancel := context.WithTimeout(s.b.ctx, s.b.opts.requestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", contentType)
	rsp, err := s.b.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer rsp.Body.Close()
	if rsp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(rsp.Body, 4096))
		if rsp.StatusCode == http.StatusNotFound {
			return nil, errGone
		}
		return nil, fmt.Errorf("%s: %s", rsp.Status, strings.TrimSpace(string(msg)))
	}
	rb, err := io.ReadAll(io.LimitReader(rsp.Body, int64(len(batch))*(4096+16)+4096))
	if err != nil {
		return nil, err
	}
	return decodeResults(rb)
}
