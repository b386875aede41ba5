package micro_test

import (
	"sync"
	"testing"
	"time"

	"github.com/microgrpc/microgrpc/broker"
	"github.com/microgrpc/microgrpc/broker/memory"
	"github.com/microgrpc/microgrpc/micro"
	"github.com/microgrpc/microgrpc/plugins"
	memreg "github.com/microgrpc/microgrpc/resolver/memory"
)

// probeBroker records what micro hands the broker plugin.
var probe struct {
	mu   sync.Mutex
	last plugins.BrokerOptions
}

func init() {
	plugins.RegisterBroker("settings-probe", func(o plugins.BrokerOptions) (broker.Broker, error) {
		probe.mu.Lock()
		probe.last = o
		probe.mu.Unlock()
		return memory.NewBroker(), nil
	})
}

// --broker_ack_wait and --broker_replicas (and their environment) reach
// the broker plugin; addresses given in code stay when only they are set.
func TestInitBrokerAckWaitAndReplicas(t *testing.T) {
	for _, tc := range []struct {
		name     string
		env      map[string]string
		args     []string
		ackWait  time.Duration
		replicas int
	}{
		{"env", map[string]string{"MICRO_BROKER_ACK_WAIT": "7s", "MICRO_BROKER_REPLICAS": "3"}, nil, 7 * time.Second, 3},
		{"flags over env", map[string]string{"MICRO_BROKER_ACK_WAIT": "7s"}, []string{"--broker_ack_wait=2", "--broker_replicas=5"}, 2 * time.Second, 5},
		{"neither", nil, nil, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code := []micro.Option{micro.WithRegistry(memreg.NewRegistry()), micro.WithBrokerPlugin("settings-probe", "nats://127.0.0.1:4222")}
			svc, err := initService(t, code, tc.env, tc.args...)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := svc.Broker(); err != nil {
				t.Fatal(err)
			}
			probe.mu.Lock()
			got := probe.last
			probe.mu.Unlock()
			if got.AckWait != tc.ackWait || got.Replicas != tc.replicas || len(got.Addrs) != 1 {
				t.Fatalf("plugin got ack wait %v, replicas %d, addrs %v; want %v, %d and the address given in code",
					got.AckWait, got.Replicas, got.Addrs, tc.ackWait, tc.replicas)
			}
		})
	}
	if _, err := initService(t, nil, map[string]string{"MICRO_BROKER_REPLICAS": "three"}); err == nil {
		t.Fatal("Init took MICRO_BROKER_REPLICAS=three")
	}
}
