package memory_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/microgrpc/microgrpc/broker"
	"github.com/microgrpc/microgrpc/broker/internal/brokertest"
	"github.com/microgrpc/microgrpc/broker/memory"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// One in-process broker plays every role: publishers and subscribers of a
// memory broker share it.
func TestConformance(t *testing.T) {
	brokertest.Run(t, func(t *testing.T) broker.Broker {
		return shared(t)
	}, brokertest.Caps{ReportsHandlerErrors: true})
}

var brokers = map[*testing.T]broker.Broker{}

// shared returns one broker per top-level subtest, wrapped so that the
// suite's Connect/Disconnect per role do not close it early.
func shared(t *testing.T) broker.Broker {
	if b, ok := brokers[t]; ok {
		return b
	}
	b := memory.NewBroker()
	brokers[t] = b
	return b
}
