// Package brokertest is the conformance suite for broker.Broker
// implementations, in the spirit of testing/fstest: a plugin author runs
// it against their own broker, and every broker in this repository runs it
// against itself (broker/direct, broker/nats, broker/jetstream,
// broker/memory).
//
// The suite checks what the broker package documents for every broker:
// broadcast to every plain subscriber, one copy per queue group, headers
// and bodies carried unchanged, no error for a topic nobody subscribes to,
// ErrInvalidTopic for bad topics (wildcards included) on Publish and
// Subscribe, ErrMessageTooLarge (headers count) naming the topic,
// DisableAutoAck, order and one-at-a-time handling with MaxConcurrent(1),
// the MaxConcurrent bound (and DefaultMaxConcurrent), a slow subscription
// holding up only itself, ErrNotConnected before Connect, ErrClosed after
// Disconnect, Unsubscribe and Disconnect waiting for the handlers in
// progress and giving up when their context ends. What only some brokers
// promise (Publish reporting handler errors, redelivery, durable
// subscriptions) is checked when Caps says the broker promises it.
//
// # Using it
//
// Write a Factory that returns a new broker, set the Caps your broker
// promises, and call Run from a test. Brokers from one Factory must reach
// one another, so share whatever they meet through (a registry, a server)
// in the factory's closure:
//
//	package mybroker_test
//
//	import (
//		"testing"
//
//		"go.uber.org/goleak"
//
//		"github.com/microgrpc/microgrpc/broker"
//		"github.com/microgrpc/microgrpc/broker/brokertest"
//		"example.com/mybroker"
//	)
//
//	// The suite ends every goroutine it starts; goleak finds the ones
//	// the broker forgets after Disconnect.
//	func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
//
//	func TestConformance(t *testing.T) {
//		srv := startTestServer(t) // whatever your brokers meet through
//		brokertest.Run(t, func(t *testing.T) broker.Broker {
//			return mybroker.NewBroker(mybroker.WithURL(srv.URL))
//		}, brokertest.Caps{ReportsHandlerErrors: true})
//	}
//
// Every check is a subtest (go test -run 'TestConformance/QueueGroups'
// runs one), uses topics of its own that include a random token (so runs
// against a durable server that outlives the test do not see each other's
// messages), and bounds every wait by Timeout, so a broken broker fails
// the check rather than hanging the test. The suite runs its checks one
// after another.
//
// New is exported for a plugin's own tests beyond the suite: it makes a
// connected broker from the same Factory and disconnects it when the test
// ends.
//
// The package imports only the standard library and broker, so depending
// on it adds nothing to a plugin's module.
package brokertest
