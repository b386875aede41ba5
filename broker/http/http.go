// Package http is microgrpc's default broker: point-to-point HTTP between
// the processes themselves, with no broker server to run.
//
// Each broker that subscribes serves one HTTP endpoint and announces each
// subscription in the registry as a node of the service
// "micro.broker.<topic>" (node metadata: topic, queue, subscription id, URL
// scheme). A publisher follows the subscribers of a topic with a registry
// watch (cached, not looked up per message; a topic's first Publish waits
// for the first listing, and a topic no Publish used for a while is
// forgotten) and delivers the message to every subscriber, or to one
// random member per queue group, failing over to another member when one
// fails.
//
// Publishes that overlap in time travel together: messages for one
// subscription queue up and go as one POST (a batch) whose answer carries
// one result per message, with a few requests per subscription in flight
// at once, over HTTP/2 (cleartext h2c without TLS, negotiated with TLS).
// A lone publisher's message leaves at once; under load, batches grow.
// Every request has a timeout.
//
// Delivery is acknowledged message by message, only when the subscriber's
// handler returned nil. A handler error comes back to the publisher, and
// when no member of a group takes a message Publish fails naming the topic
// and the group: nothing is dropped silently, and nothing is kept in a
// hidden backlog. Within one broker, publishing to its own subscribers
// calls them directly.
package http

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/microgrpc/microgrpc/broker"
	"github.com/microgrpc/microgrpc/internal/addr"
	"github.com/microgrpc/microgrpc/resolver"
)

// Name is the broker's name.
const Name = "http"

// ServicePrefix prefixes the registry name of a topic's subscribers.
const ServicePrefix = "micro.broker."

// path is where subscriptions take batches (see wire.go).
const path = "/micro/broker/batch"

// NewBroker returns an HTTP broker. It needs a registry (WithRegistry) to
// reach other processes.
func NewBroker(opts ...Option) broker.Broker {
	o := defaultOptions()
	for _, opt := range opts {
		opt(&o)
	}
	var id [6]byte
	_, _ = rand.Read(id[:])
	b := &httpBroker{opts: o, id: hex.EncodeToString(id[:]), subs: map[string]*subscription{},
		topics: map[string]*topicCache{}, senders: map[string]*sender{}}
	// HTTP/2 only: over TLS negotiated, without it cleartext with prior
	// knowledge (h2c); every subscriber is one of ours and speaks it.
	var protocols http.Protocols
	protocols.SetHTTP2(true)
	protocols.SetUnencryptedHTTP2(true)
	b.transport = &http.Transport{
		Protocols:           &protocols,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
		TLSClientConfig:     o.clientTLS,
		ForceAttemptHTTP2:   true,
		DialContext:         (&net.Dialer{Timeout: o.requestTimeout}).DialContext,
	}
	b.client = &http.Client{Transport: b.transport, Timeout: o.requestTimeout}
	return b
}

type httpBroker struct {
	opts      options
	id        string
	transport *http.Transport
	client    *http.Client

	mu        sync.Mutex
	connected bool
	closed    bool
	lis       net.Listener
	server    *http.Server
	address   string // advertised
	subs      map[string]*subscription
	topics    map[string]*topicCache
	senders   map[string]*sender // by subscription id and address
	nextSub   int

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func (b *httpBroker) String() string { return Name }

func (b *httpBroker) Address() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.address
}

func (b *httpBroker) Connect(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case b.closed:
		return broker.ErrClosed
	case b.connected:
		return nil
	case b.opts.registry == nil:
		return errors.New("http broker: no registry (use WithRegistry)")
	}
	lis, err := net.Listen("tcp", b.opts.address)
	if err != nil {
		return fmt.Errorf("http broker: listen on %q: %w", b.opts.address, err)
	}
	adv, err := addr.Advertise(b.opts.advertise, lis.Addr())
	if err != nil {
		lis.Close()
		return err
	}
	b.lis, b.address = lis, adv
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+path, b.serveHTTP)
	// HTTP/1.1 too, for clients other than our own.
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetHTTP2(true)
	protocols.SetUnencryptedHTTP2(true)
	b.server = &http.Server{Handler: mux, ReadHeaderTimeout: b.opts.requestTimeout, TLSConfig: b.opts.serverTLS, Protocols: &protocols}
	b.ctx, b.cancel = context.WithCancel(context.Background())
	b.wg.Add(2)
	go func() {
		defer b.wg.Done()
		var err error
		if b.opts.serverTLS != nil {
			err = b.server.ServeTLS(lis, "", "")
		} else {
			err = b.server.Serve(lis)
		}
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			b.opts.logger.Error("http broker: serve", "error", err)
		}
	}()
	go func() {
		defer b.wg.Done()
		b.heartbeat()
	}()
	b.connected = true
	return nil
}

func (b *httpBroker) scheme() string {
	if b.opts.serverTLS != nil {
		return "https"
	}
	return "http"
}

// Disconnect stops every subscription (deregistered, then the deliveries
// in progress finish, within ctx), closes the endpoint (nothing is being
// handled any more, so it does not wait for publishers' idle HTTP/2
// connections to go away, as http.Server.Shutdown would), fails what this
// broker still has queued for others, and closes its connections.
func (b *httpBroker) Disconnect(ctx context.Context) error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	wasConnected := b.connected
	b.connected = false
	subs := b.subs
	b.subs = map[string]*subscription{}
	topics := b.topics
	b.topics = map[string]*topicCache{}
	b.senders = map[string]*sender{}
	b.mu.Unlock()
	if !wasConnected {
		return nil
	}
	var errs []error
	for _, s := range subs {
		if err := s.Unsubscribe(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	if err := b.server.Close(); err != nil {
		errs = append(errs, fmt.Errorf("http broker: close: %w", err))
	}
	b.cancel()
	for _, tc := range topics {
		tc.stop()
	}
	b.wg.Wait()
	b.transport.CloseIdleConnections()
	return errors.Join(errs...)
}

// heartbeat re-registers every subscription every interval, and forgets
// idle topics.
func (b *httpBroker) heartbeat() {
	t := time.NewTicker(b.opts.registerInterval)
	defer t.Stop()
	evict := time.NewTicker(max(b.opts.idleTimeout/2, time.Millisecond))
	defer evict.Stop()
	for {
		select {
		case <-b.ctx.Done():
			return
		case now := <-evict.C:
			b.evictIdle(now)
			continue
		case <-t.C:
		}
		b.mu.Lock()
		subs := make([]*subscription, 0, len(b.subs))
		for _, s := range b.subs {
			subs = append(subs, s)
		}
		b.mu.Unlock()
		for _, s := range subs {
			if err := b.register(b.ctx, s); err != nil && b.ctx.Err() == nil {
				b.opts.logger.Warn("http broker: re-register subscription failed", "topic", s.topic, "error", err)
			}
		}
	}
}

func (b *httpBroker) service(s *subscription) *resolver.Service {
	return &resolver.Service{Name: ServicePrefix + s.topic, Nodes: []resolver.Node{{
		ID: s.id, Address: b.address,
		Metadata: map[string]string{"broker": Name, "topic": s.topic, "queue": s.opts.Queue, "scheme": b.scheme()},
	}}}
}

func (b *httpBroker) register(ctx context.Context, s *subscription) error {
	ctx, cancel := context.WithTimeout(ctx, b.opts.requestTimeout)
	defer cancel()
	return b.opts.registry.Register(ctx, b.service(s), resolver.WithTTL(b.opts.registerTTL))
}

func (b *httpBroker) deregister(ctx context.Context, s *subscription) error {
	ctx, cancel := context.WithTimeout(ctx, b.opts.requestTimeout)
	defer cancel()
	return b.opts.registry.Deregister(ctx, b.service(s))
}
