// Package http is microgrpc's default broker: point-to-point HTTP between
// the processes themselves, with no broker server to run.
//
// Each broker that subscribes serves one HTTP endpoint and announces each
// subscription in the registry as a node of the service
// "micro.broker.<topic>" (node metadata: topic, queue, subscription id, URL
// scheme). A publisher follows the subscribers of a topic with a registry
// watch (cached, not looked up per message) and POSTs the message to every
// subscriber, or to one random member per queue group, failing over to
// another member when one fails. Connections are reused (HTTP/1.1
// keep-alive; HTTP/2 with TLS). Every request has a timeout.
//
// Delivery is acknowledged only when the subscriber's handler returned nil
// (a 2xx answer). A handler error comes back to the publisher, and when no
// member of a group takes a message Publish fails naming the topic and the
// group: nothing is dropped silently, and nothing is kept in a hidden
// backlog. Within one broker, publishing to its own subscribers calls them
// directly.
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

const path = "/micro/broker"

// NewBroker returns an HTTP broker. It needs a registry (WithRegistry) to
// reach other processes.
func NewBroker(opts ...Option) broker.Broker {
	o := defaultOptions()
	for _, opt := range opts {
		opt(&o)
	}
	var id [6]byte
	_, _ = rand.Read(id[:])
	b := &httpBroker{opts: o, id: hex.EncodeToString(id[:]), subs: map[string]*subscription{}, topics: map[string]*topicCache{}}
	b.transport = &http.Transport{
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
		TLSClientConfig:     o.clientTLS,
		ForceAttemptHTTP2:   o.clientTLS != nil,
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
	b.server = &http.Server{Handler: mux, ReadHeaderTimeout: b.opts.requestTimeout, TLSConfig: b.opts.serverTLS}
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

// Disconnect deregisters the subscriptions, stops the endpoint like
// http.Server.Shutdown (handlers in progress finish, within ctx), and
// closes idle connections.
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
	b.mu.Unlock()
	if !wasConnected {
		return nil
	}
	var errs []error
	for _, s := range subs {
		if err := b.deregister(ctx, s); err != nil {
			errs = append(errs, err)
		}
	}
	if err := b.server.Shutdown(ctx); err != nil {
		errs = append(errs, fmt.Errorf("http broker: shutdown: %w", err))
	}
	b.cancel()
	for _, tc := range topics {
		tc.stop()
	}
	b.wg.Wait()
	b.transport.CloseIdleConnections()
	return errors.Join(errs...)
}

// heartbeat re-registers every subscription every interval.
func (b *httpBroker) heartbeat() {
	t := time.NewTicker(b.opts.registerInterval)
	defer t.Stop()
	for {
		select {
		case <-b.ctx.Done():
			return
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
