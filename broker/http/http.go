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
// A publisher keeps one connection to each subscriber process (an
// HTTP/1.1 request upgraded to a small framed protocol; TLS when the
// subscriber serves it). Every message is a frame with a sequence number,
// every handler's result a frame answering it, as soon as that handler
// returns: many deliveries are in flight on one connection, for any of
// the process's subscriptions, and frames written while a write is in
// progress share the next socket write, so a lone publisher's message
// leaves at once and under load the writes grow. Every delivery has a
// timeout.
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
	"log/slog"
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

// NewBroker returns an HTTP broker. It needs a registry (WithRegistry) to
// reach other processes.
func NewBroker(opts ...Option) broker.Broker {
	o := defaultOptions()
	for _, opt := range opts {
		opt(&o)
	}
	var id [6]byte
	_, _ = rand.Read(id[:])
	return &httpBroker{opts: o, id: hex.EncodeToString(id[:]), subs: map[string]*subscription{},
		topics: map[string]*topicCache{}, peers: map[string]*peer{}, streams: map[*stream]struct{}{}}
}

type httpBroker struct {
	opts options
	id   string

	mu        sync.Mutex
	connected bool
	closed    bool
	lis       net.Listener
	server    *http.Server
	address   string // advertised in the registry nodes of our subscriptions
	subs      map[string]*subscription
	topics    map[string]*topicCache
	peers     map[string]*peer     // other processes we deliver to, by URL
	streams   map[*stream]struct{} // publishers' connections to us
	nextSub   int

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func (b *httpBroker) String() string { return Name }

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
	mux.HandleFunc("GET "+streamPath, b.serveStream)
	// HTTP/1.1 only: the delivery protocol is an upgrade of an HTTP/1.1
	// request (over TLS too: ALPN offers http/1.1 alone).
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	b.server = &http.Server{Handler: mux, TLSConfig: b.opts.serverTLS, Protocols: &protocols,
		// The only request is a publisher's upgrade: it has no body, and
		// a connection that does not send it in time is dropped. After the
		// upgrade the connection is the broker's (serve.go).
		ReadHeaderTimeout: b.opts.requestTimeout, ReadTimeout: b.opts.requestTimeout,
		WriteTimeout: b.opts.requestTimeout, IdleTimeout: b.opts.requestTimeout,
		MaxHeaderBytes: DefaultMaxHeaderBytes,
		// TLS handshake failures (a publisher without a valid client
		// certificate) are logged with the remote address.
		ErrorLog: slog.NewLogLogger(b.opts.logger.Handler(), slog.LevelWarn)}
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
	peers := b.peers
	b.peers = map[string]*peer{}
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
	b.mu.Lock()
	streams := b.streams
	b.streams = map[*stream]struct{}{}
	b.mu.Unlock()
	for st := range streams {
		st.close()
	}
	for _, p := range peers {
		p.close(broker.ErrClosed)
	}
	for _, tc := range topics {
		tc.stop()
	}
	b.wg.Wait()
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
