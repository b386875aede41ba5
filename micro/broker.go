package micro

import (
	"fmt"
	"log/slog"

	"github.com/microgrpc/microgrpc/broker"
	"github.com/microgrpc/microgrpc/interceptors"
	"github.com/microgrpc/microgrpc/plugins"
)

// Broker returns the service's broker, making it from the broker plugin
// (default http, over the service's registry) on first use, or the error
// that making it gave; micro/pubsub reports the same error. A broker name
// nothing registered fails at Init already, except http: its plugin comes
// with micro/pubsub, so that a service that does not use pub/sub does not
// link it.
//
// A broker made before the service serves is given the service's gRPC
// server to receive deliveries on (the http broker registers its delivery
// service there); one made later, a server of its own if it needs one.
func (s *Service) Broker() (broker.Broker, error) {
	return s.broker()
}

func (s *Service) broker() (broker.Broker, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.brokerLocked()
}

// brokerLocked is broker. Caller must hold s.mu.
func (s *Service) brokerLocked() (broker.Broker, error) {
	if s.brk != nil || s.brkErr != nil {
		return s.brk, s.brkErr
	}
	reg, err := s.registryLocked()
	if err != nil {
		s.brkErr = err
		return nil, err
	}
	bo := plugins.BrokerOptions{Addrs: s.opts.brokerAddrs, Registry: reg, Token: s.opts.brokerToken,
		InsecureToken: s.opts.brokerInsecureToken, Logger: s.opts.logger,
		AckWait: s.opts.brokerAckWait, Replicas: s.opts.brokerReplicas}
	src, err := s.tlsSourceLocked()
	if err != nil {
		s.brkErr = err
		return nil, err
	}
	if src != nil {
		bo.ClientTLS = src.ClientConfig()
		if src.HasCert() {
			bo.ServerTLS = src.ServerConfig()
			bo.MutualTLS = src.HasCA()
		}
	}
	if s.address == "" { // Run has not listened yet: the server does not serve
		srv, err := s.serverLocked()
		if err != nil {
			s.brkErr = err
			return nil, err
		}
		bo.Server, bo.Advertise = srv, s.Address
	}
	s.brk, s.brkErr = plugins.NewBroker(s.opts.brokerName, bo)
	if s.brkErr != nil {
		s.brkErr = fmt.Errorf("micro: %w", s.brkErr)
	}
	s.ownsBroker = s.brkErr == nil
	// The broker took the settings (and may have registered its delivery
	// service on the server): Init must not make another one.
	s.used = s.used || s.ownsBroker
	return s.brk, s.brkErr
}

// SubscriberInterceptors returns the subscriber interceptors given with
// WithSubscriberInterceptors, outermost first, for micro/pubsub.
func (s *Service) SubscriberInterceptors() []interceptors.SubscriberInterceptor {
	return s.opts.subscriberInterceptors
}

// Logger returns the service's logger.
func (s *Service) Logger() *slog.Logger { return s.opts.logger }
