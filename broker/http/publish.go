package http

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/microgrpc/microgrpc/broker"
	"github.com/microgrpc/microgrpc/resolver"
)

// topicCache follows the subscribers of one topic through a registry
// watch.
type topicCache struct {
	b      *httpBroker
	name   string
	cancel context.CancelFunc
	done   chan struct{}

	mu    sync.RWMutex
	nodes map[string]resolver.Node
}

func (tc *topicCache) stop() {
	tc.cancel()
	<-tc.done
}

func (tc *topicCache) snapshot() []resolver.Node {
	tc.mu.RLock()
	defer tc.mu.RUnlock()
	out := make([]resolver.Node, 0, len(tc.nodes))
	for _, n := range tc.nodes {
		out = append(out, n)
	}
	return out
}

// topic returns the cache of a topic's subscribers, listing them the first
// time (later changes arrive through the watch).
func (b *httpBroker) topic(ctx context.Context, topic string) (*topicCache, error) {
	b.mu.Lock()
	if tc, ok := b.topics[topic]; ok {
		b.mu.Unlock()
		return tc, nil
	}
	wctx, cancel := context.WithCancel(b.ctx)
	tc := &topicCache{b: b, name: ServicePrefix + topic, cancel: cancel, done: make(chan struct{}), nodes: map[string]resolver.Node{}}
	b.topics[topic] = tc
	b.mu.Unlock()

	w, err := b.opts.registry.Watch(wctx, resolver.WatchService(tc.name))
	if err == nil {
		err = tc.list(ctx)
	}
	if err != nil {
		if w != nil {
			w.Stop()
		}
		cancel()
		close(tc.done)
		b.mu.Lock()
		delete(b.topics, topic)
		b.mu.Unlock()
		return nil, fmt.Errorf("http broker: find subscribers of %q in %s: %w", topic, b.opts.registry, err)
	}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		defer close(tc.done)
		tc.follow(wctx, w)
	}()
	return tc, nil
}

func (tc *topicCache) list(ctx context.Context) error {
	svcs, err := tc.b.opts.registry.GetService(ctx, tc.name)
	if err != nil && !errors.Is(err, resolver.ErrNotFound) {
		return err
	}
	tc.mu.Lock()
	defer tc.mu.Unlock()
	clear(tc.nodes)
	for _, s := range svcs {
		for _, n := range s.Nodes {
			tc.nodes[n.ID] = n
		}
	}
	return nil
}

// follow applies watch events; when the watch fails it re-lists and
// watches again, backing off.
func (tc *topicCache) follow(ctx context.Context, w resolver.Watcher) {
	delay := 100 * time.Millisecond
	for {
		for {
			ev, err := w.Next()
			if err != nil {
				break
			}
			tc.mu.Lock()
			for _, n := range ev.Service.Nodes {
				if ev.Action == resolver.Delete {
					delete(tc.nodes, n.ID)
				} else {
					tc.nodes[n.ID] = n
				}
			}
			tc.mu.Unlock()
		}
		w.Stop()
		for {
			t := time.NewTimer(delay)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			delay = min(2*delay, 10*time.Second)
			var err error
			if w, err = tc.b.opts.registry.Watch(ctx, resolver.WatchService(tc.name)); err != nil {
				continue
			}
			if err := tc.list(ctx); err != nil {
				w.Stop()
				continue
			}
			delay = 100 * time.Millisecond
			break
		}
	}
}

// Publish delivers m to every subscriber of topic and to one member of
// every queue group.
func (b *httpBroker) Publish(ctx context.Context, topic string, m *broker.Message, opts ...broker.PublishOption) error {
	if err := broker.ValidateTopic(topic); err != nil {
		return err
	}
	msg := broker.NewPublishOptions(opts...).Prepare(m)
	if err := broker.CheckSize(topic, msg, b.opts.maxSize); err != nil {
		return err
	}
	b.mu.Lock()
	switch {
	case b.closed:
		b.mu.Unlock()
		return broker.ErrClosed
	case !b.connected:
		b.mu.Unlock()
		return broker.ErrNotConnected
	}
	b.mu.Unlock()
	tc, err := b.topic(ctx, topic)
	if err != nil {
		return err
	}
	body, err := json.Marshal(envelope{Topic: topic, Header: msg.Header, Body: msg.Body})
	if err != nil {
		return err
	}
	var plain []resolver.Node
	groups := map[string][]resolver.Node{}
	for _, n := range tc.snapshot() {
		if q := n.Metadata["queue"]; q != "" {
			groups[q] = append(groups[q], n)
		} else {
			plain = append(plain, n)
		}
	}
	var errs []error
	for _, n := range plain {
		if err := b.send(ctx, n, topic, msg, body); err != nil {
			errs = append(errs, fmt.Errorf("%w: topic %q, subscriber %s at %s: %v", broker.ErrNotDelivered, topic, n.ID, n.Address, err))
		}
	}
	for q, members := range groups {
		var tried []error
		delivered := false
		for _, i := range rand.Perm(len(members)) {
			err := b.send(ctx, members[i], topic, msg, body)
			if err == nil {
				delivered = true
				break
			}
			tried = append(tried, fmt.Errorf("%s: %v", members[i].ID, err))
			if ctx.Err() != nil {
				break
			}
		}
		if !delivered {
			errs = append(errs, fmt.Errorf("%w: topic %q, queue group %q: no member took it (%v)", broker.ErrNotDelivered, topic, q, errors.Join(tried...)))
		}
	}
	return errors.Join(errs...)
}

// send delivers to one subscriber: directly when it is one of ours, over
// HTTP otherwise.
func (b *httpBroker) send(ctx context.Context, n resolver.Node, topic string, m *broker.Message, body []byte) error {
	b.mu.Lock()
	local := b.subs[n.ID]
	b.mu.Unlock()
	if local != nil {
		return local.deliver(ctx, m.Clone())
	}
	scheme := n.Metadata["scheme"]
	if scheme != "https" {
		scheme = "http"
	}
	u := url.URL{Scheme: scheme, Host: n.Address, Path: path, RawQuery: "sub=" + url.QueryEscape(n.ID)}
	rctx, cancel := context.WithTimeout(ctx, b.opts.requestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, u.String(), bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	rsp, err := b.client.Do(req)
	if err != nil {
		return err
	}
	defer rsp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(rsp.Body, 4096))
	if rsp.StatusCode/100 == 2 {
		return nil
	}
	return fmt.Errorf("%s: %s", rsp.Status, strings.TrimSpace(string(msg)))
}
