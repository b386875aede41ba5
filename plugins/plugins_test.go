package plugins_test

import (
	"errors"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/microgrpc/microgrpc/plugins"
	_ "github.com/microgrpc/microgrpc/plugins/all"
	"github.com/microgrpc/microgrpc/resolver"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestBuiltinNames(t *testing.T) {
	if got := strings.Join(plugins.Registries(), ","); got != "etcd,mdns,memory" {
		t.Errorf("registries %s", got)
	}
	if got := strings.Join(plugins.Brokers(), ","); got != "http,jetstream,memory,nats" {
		t.Errorf("brokers %s", got)
	}
}

func TestUnknownNameListsKnownOnes(t *testing.T) {
	_, err := plugins.NewRegistry("consul", plugins.RegistryOptions{})
	if !errors.Is(err, plugins.ErrUnknownPlugin) || !strings.Contains(err.Error(), "etcd, mdns, memory") {
		t.Fatalf("NewRegistry(consul) = %v", err)
	}
	_, err = plugins.NewBroker("kafka", plugins.BrokerOptions{})
	if !errors.Is(err, plugins.ErrUnknownPlugin) || !strings.Contains(err.Error(), "http, jetstream, memory, nats") {
		t.Fatalf("NewBroker(kafka) = %v", err)
	}
}

func TestDuplicateRegistrationPanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("registering a taken name did not panic")
		}
	}()
	plugins.RegisterRegistry("memory", func(plugins.RegistryOptions) (resolver.Registry, error) { return nil, nil })
}

func TestMemoryPlugin(t *testing.T) {
	r, err := plugins.NewRegistry("memory", plugins.RegistryOptions{})
	if err != nil || r.String() != "memory" {
		t.Fatal(r, err)
	}
	if _, err := plugins.NewBroker("http", plugins.BrokerOptions{}); err == nil {
		t.Fatal("http broker without a registry accepted")
	}
}
