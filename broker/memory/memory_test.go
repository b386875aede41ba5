package memory_test

import (
	"sync"
	"testing"

	"go.uber.org/goleak"

	"github.com/microgrpc/microgrpc/broker"
	"github.com/microgrpc/microgrpc/broker/brokertest"
	"github.com/microgrpc/microgrpc/broker/memory"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// Memory brokers do not reach one another, so every role of a check (the
// suite's Factory is called with the check's t) shares one broker, as
// brokertest.Factory allows.
func TestConformance(t *testing.T) {
	var mu sync.Mutex
	brokers := map[*testing.T]broker.Broker{}
	brokertest.Run(t, func(t *testing.T) broker.Broker {
		mu.Lock()
		defer mu.Unlock()
		if b, ok := brokers[t]; ok {
			return b
		}
		b := memory.NewBroker()
		brokers[t] = b
		t.Cleanup(func() {
			mu.Lock()
			delete(brokers, t)
			mu.Unlock()
		})
		return b
	}, brokertest.Caps{ReportsHandlerErrors: true})
}
