package nats_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/microgrpc/microgrpc/broker"
	"github.com/microgrpc/microgrpc/broker/internal/brokertest"
	natsbroker "github.com/microgrpc/microgrpc/broker/nats"
	"github.com/microgrpc/microgrpc/internal/natstest"
)

var url string

func TestMain(m *testing.M) {
	srv, err := natstest.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	url = srv.ClientURL()
	code := m.Run()
	natstest.Stop(srv)
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

var quiet = slog.New(slog.DiscardHandler)

func factory(t *testing.T) broker.Broker {
	return natsbroker.NewBroker(natsbroker.WithURLs(url), natsbroker.WithLogger(quiet))
}

func TestConformance(t *testing.T) {
	brokertest.Run(t, factory, brokertest.Caps{ReportsHandlerErrors: false})
}

func TestConnectFailureIsClear(t *testing.T) {
	b := natsbroker.NewBroker(natsbroker.WithURLs("nats://127.0.0.1:1"), natsbroker.WithLogger(quiet))
	err := b.Connect(context.Background())
	if err == nil {
		b.Disconnect(context.Background())
		t.Fatal("connected to a closed port")
	}
}

func TestURLsFromEnv(t *testing.T) {
	got := natsbroker.URLsFromEnv(func(string) (string, bool) { return "nats://a:1, nats://b:2", true })
	if fmt.Sprint(got) != "[nats://a:1 nats://b:2]" {
		t.Fatal(got)
	}
}
