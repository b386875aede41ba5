// Package direct is microgrpc's default broker, known by go-micro's name
// for it, "http": point-to-point delivery between the processes
// themselves over gRPC (HTTP/2), with no broker server to run.
//
// # Subscribing
//
// A broker that subscribes serves the Deliverer service of
// proto/delivery on a gRPC server: the node's own when it is given one
// (WithServer; a micro service gives its own, so deliveries share its
// port, its TLS, its limits), or else one of its own, started by Connect
// on WithAddress with the same limits as a micro service's. Each
// subscription is announced in the registry as a node of the service
// "micro.broker.<topic>" whose address is that server's (node metadata:
// topic, queue).
//
// # Publishing
//
// A publisher follows the subscribers of a topic with a registry watch
// (cached, not looked up per message; a topic's first Publish waits for
// the first listing, and a topic no Publish used for a while is
// forgotten) and delivers the message to every subscriber, or to one
// random member per queue group, failing over to another member when one
// fails. It keeps one gRPC connection, and one Deliver stream on it, to
// each subscriber node: many deliveries are in flight on the stream at
// once, for any of the node's subscriptions, and publishes that overlap
// share a stream message. Every delivery has a timeout (WithRequestTimeout)
// on top of the caller's context.
//
// Delivery is acknowledged message by message, only when the subscriber's
// handler returned nil. A handler error comes back to the publisher, and
// when no member of a group takes a message Publish fails naming the topic
// and the group: nothing is dropped silently, and nothing is kept in a
// hidden backlog. Within one broker, publishing to its own subscriptions
// calls them directly.
//
// # Security
//
// Connections to subscribers are made with the client TLS configuration
// given with WithTLS, whatever a subscriber's registry record says: a
// publisher with TLS never sends to a plaintext node (the handshake
// fails, and Publish names the node). The broker token (WithToken) is
// sent as gRPC per-RPC credentials, which grpc-go refuses to send over a
// connection without TLS, unless WithInsecureToken says to. A subscriber
// authenticates each stream once: a client certificate that its server
// verified (mutual TLS), or the token. With mutual TLS the handler's
// context carries the publisher's identity (auth.PeerIdentity) and a
// subscription can admit only some publishers (broker.AllowPublishers).
// With TLS but neither client certificates nor a token anyone could
// deliver, so Subscribe refuses; with no security at all (development)
// the broker logs once that deliveries are unauthenticated.
package direct

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/microgrpc/microgrpc/broker"
	"github.com/microgrpc/microgrpc/internal/addr"
	"github.com/microgrpc/microgrpc/internal/grpclimits"
	"github.com/microgrpc/microgrpc/proto/delivery"
	"github.com/microgrpc/microgrpc/resolver"
)

// Name is the broker's plugin name, go-micro's for a broker that delivers
// point to point.
const Name = "http"

// ServicePrefix prefixes the registry name of a topic's subscribers.
const ServicePrefix = "micro.broker."

// DeliveryService is the full name of the gRPC service deliveries use.
const DeliveryService = "microgrpc.broker.v1.Deliverer"

// Errors of the broker's configuration, wrapped by what Connect and
// Subscribe return.
var (
	// ErrUnauthenticated: TLS is on, but subscribers would accept any
	// publisher (no client certificates required, no token).
	ErrUnauthenticated = errors.New("direct broker: deliveries would be unauthenticated: set --tls_ca_file or --broker_token")
	// ErrPlaintextToken: a token without TLS would travel in the clear.
	ErrPlaintextToken = errors.New("direct broker: the broker token would be sent without TLS: turn TLS on, or allow it with WithInsecureToken (--broker_insecure_token)")
)

// NewBroker returns a broker. It needs a registry (WithRegistry) to
// announce subscriptions in and find subscribers through. With WithServer
// it registers its delivery service on that server at once (so call it
// before the server serves).
func NewBroker(opts ...Option) broker.Broker {
	o := defaultOptions()
	for _, opt := range opts {
		opt(&o)
	}
	var id [6]byte
	_, _ = rand.Read(id[:])
	b := &directBroker{opts: o, id: hex.EncodeToString(id[:]), subs: map[string]*subscription{},
		topics: map[string]*topicCache{}, peers: map[string]*peer{}, streams: map[*inStream]struct{}{}, outs: map[*outStream]struct{}{}}
	b.ctx, b.cancel = context.WithCancel(context.Background())
	if o.server != nil {
		delivery.RegisterDelivererServer(o.server, &deliverer{b: b})
	}
	return b
}

type directBroker struct {
	opts options
	id   string

	// Lock order: a peer's mu before b.mu (peer.stream); b.mu before a
	// subscription's, a stream's or an outStream's mu.
	mu        sync.Mutex
	connected bool
	closed    bool
	own       *grpc.Server // our own server, when not given one
	address   string       // our own server's advertised address
	subs      map[string]*subscription
	topics    map[string]*topicCache
	peers     map[string]*peer        // subscriber nodes we deliver to, by address
	streams   map[*inStream]struct{}  // publishers' streams to us
	outs      map[*outStream]struct{} // our streams to subscriber nodes, for the expirer
	streamWG  sync.WaitGroup          // one per entry of streams
	nextSub   int
	warned    bool // the "unauthenticated" warning was logged

	ctx    context.Context // ends with Disconnect
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func (b *directBroker) String() string { return Name }

// Connect makes the broker ready. Without WithServer, the first Subscribe
// listens and serves the delivery service on a server of its own (a
// broker that only publishes serves nothing).
func (b *directBroker) Connect(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case b.closed:
		return broker.ErrClosed
	case b.connected:
		return nil
	case b.opts.registry == nil:
		return errors.New("direct broker: no registry (use WithRegistry)")
	case b.opts.token != "" && b.opts.clientTLS == nil && !b.opts.insecureToken:
		return ErrPlaintextToken
	}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		b.heartbeat()
	}()
	b.connected = true
	return nil
}

// serveLocked starts the broker's own server. Caller must hold b.mu.
func (b *directBroker) serveLocked() error {
	lis, err := net.Listen("tcp", b.opts.address)
	if err != nil {
		return fmt.Errorf("direct broker: listen on %q: %w", b.opts.address, err)
	}
	adv, err := addr.Advertise(b.opts.advertise, lis.Addr())
	if err != nil {
		lis.Close()
		return err
	}
	opts := append(grpclimits.Keepalive(), grpclimits.Limits()...)
	// Fixed windows, as on the publishing side: no bandwidth probing.
	opts = append(opts, grpc.InitialWindowSize(streamWindow), grpc.InitialConnWindowSize(streamWindow))
	if b.opts.serverTLS != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(b.opts.serverTLS)))
	}
	b.own = grpc.NewServer(opts...)
	delivery.RegisterDelivererServer(b.own, &deliverer{b: b})
	b.address = adv
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		if err := b.own.Serve(lis); err != nil {
			b.opts.logger.Error("direct broker: serve", "error", err)
		}
	}()
	return nil
}

// advertised is the address subscriptions are announced with: the node's
// when it serves, else that of the broker's own server, started on first
// need (a program that subscribes through a service it never runs, such
// as the micro command's subscribe).
func (b *directBroker) advertised() (string, error) {
	if b.opts.server != nil {
		if a := b.opts.advertiseFunc(); a != "" {
			return a, nil
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case b.closed:
		return "", broker.ErrClosed
	case !b.connected:
		return "", broker.ErrNotConnected
	case b.own == nil:
		if err := b.serveLocked(); err != nil {
			return "", err
		}
	}
	return b.address, nil
}

// secure checks, at a subscription's start, that its deliveries will be
// authenticated, and logs once when nothing authenticates them.
func (b *directBroker) secure() error {
	tlsOn := b.opts.serverTLS != nil
	switch {
	case tlsOn && !b.opts.mutualTLS && b.opts.token == "":
		return ErrUnauthenticated
	case !tlsOn && b.opts.token == "":
		b.mu.Lock()
		warn := !b.warned
		b.warned = true
		b.mu.Unlock()
		if warn {
			b.opts.logger.Warn("direct broker: deliveries are unauthenticated (no TLS, no broker token): " +
				"any client that reaches this node can publish to its subscriptions; set --tls_* or --broker_token outside development")
		}
	}
	return nil
}

// Disconnect stops every subscription (deregistered, then the deliveries
// queued and in progress finish, within ctx), tells publishers' streams
// to go away, fails what this broker still has in flight to others, and
// closes its connections and its own server. Nothing of the broker runs
// after it returns except handlers that ignore their cancelled context.
func (b *directBroker) Disconnect(ctx context.Context) error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	b.connected = false
	subs := b.subs
	b.subs = map[string]*subscription{}
	topics := b.topics
	b.topics = map[string]*topicCache{}
	peers := b.peers
	b.peers = map[string]*peer{}
	b.mu.Unlock()
	var errs []error
	for _, s := range subs {
		if err := s.Unsubscribe(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	// Publishers' streams go away once every result is sent, within ctx.
	b.goAway()
	streamsDone := make(chan struct{})
	go func() { b.streamWG.Wait(); close(streamsDone) }()
	select {
	case <-streamsDone:
	case <-ctx.Done():
	}
	b.cancel()
	for _, p := range peers {
		p.close(broker.ErrClosed)
	}
	for _, tc := range topics {
		tc.stop()
	}
	if b.own != nil {
		b.own.Stop()
	}
	b.wg.Wait()
	return errors.Join(errs...)
}

// heartbeat re-registers every subscription every interval, and forgets
// idle topics and connections.
func (b *directBroker) heartbeat() {
	t := time.NewTicker(b.opts.registerInterval)
	defer t.Stop()
	evict := time.NewTicker(max(b.opts.idleTimeout/2, time.Millisecond))
	defer evict.Stop()
	// Deliveries that get no answer within the request timeout fail a
	// tenth of it late at most: one ticker for them all instead of a timer
	// per delivery.
	expire := time.NewTicker(max(b.opts.requestTimeout/10, time.Millisecond))
	defer expire.Stop()
	for {
		select {
		case <-b.ctx.Done():
			return
		case now := <-evict.C:
			b.evictIdle(now)
			continue
		case now := <-expire.C:
			b.mu.Lock()
			outs := make([]*outStream, 0, len(b.outs))
			for out := range b.outs {
				outs = append(outs, out)
			}
			b.mu.Unlock()
			for _, out := range outs {
				out.expire(now.UnixNano(), b.opts.requestTimeout)
			}
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
				b.opts.logger.Warn("direct broker: re-register subscription failed", "topic", s.topic, "error", err)
			}
		}
	}
}

func (b *directBroker) service(s *subscription) *resolver.Service {
	return &resolver.Service{Name: ServicePrefix + s.topic, Nodes: []resolver.Node{{
		ID: s.id, Address: s.address,
		Metadata: map[string]string{"broker": Name, "topic": s.topic, "queue": s.opts.Queue},
	}}}
}

func (b *directBroker) register(ctx context.Context, s *subscription) error {
	ctx, cancel := context.WithTimeout(ctx, b.opts.requestTimeout)
	defer cancel()
	return b.opts.registry.Register(ctx, b.service(s), resolver.WithTTL(b.opts.registerTTL))
}

func (b *directBroker) deregister(ctx context.Context, s *subscription) error {
	ctx, cancel := context.WithTimeout(ctx, b.opts.requestTimeout)
	defer cancel()
	return b.opts.registry.Deregister(ctx, b.service(s))
}

// clientTLS is the configuration connections to subscribers use; nil
// without TLS.
func (b *directBroker) clientTLS() *tls.Config { return b.opts.clientTLS }
