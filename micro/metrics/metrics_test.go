package metrics_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"
	"google.golang.org/grpc"

	"github.com/microgrpc/microgrpc/internal/greetertest"
	"github.com/microgrpc/microgrpc/micro"
	"github.com/microgrpc/microgrpc/micro/metrics"
	pb "github.com/microgrpc/microgrpc/proto/greeter"
	"github.com/microgrpc/microgrpc/resolver/memory"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// Calls served and made are counted; a client and a server in one process
// share the collectors.
func TestCountsCalls(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	promReg := prometheus.NewRegistry()
	reg := memory.NewRegistry()
	runCtx, stop := context.WithCancel(ctx)
	started := make(chan struct{})
	svc := micro.NewService(micro.WithName("greeter"), micro.WithAddress("127.0.0.1:0"), micro.WithRegistry(reg),
		micro.WithContext(runCtx), micro.WithSignal(false), micro.WithDeregisterWait(0), metrics.With(promReg),
		micro.WithAfterStart(func(context.Context) error { close(started); return nil }))
	pb.RegisterGreeterServer(svc.Server(), &greetertest.Server{Node: "n"})
	done := make(chan error, 1)
	go func() { done <- svc.Run() }()
	defer func() { stop(); <-done }()
	select {
	case <-started:
	case err := <-done:
		t.Fatal(err)
	}
	client := micro.NewService(micro.WithName("client"), micro.WithRegistry(reg), metrics.With(promReg))
	defer client.Close()
	for range 2 {
		if _, err := pb.NewGreeterClient(client.Dial("greeter")).Hello(ctx, &pb.Request{}, grpc.WaitForReady(true)); err != nil {
			t.Fatal(err)
		}
	}
	for _, want := range []string{`
# HELP grpc_server_handled_total Total number of RPCs completed on the server, regardless of success or failure.
# TYPE grpc_server_handled_total counter
grpc_server_handled_total{grpc_code="OK",grpc_method="Hello",grpc_service="greeter.Greeter",grpc_type="unary"} 2
`, `
# HELP grpc_client_handled_total Total number of RPCs completed by the client, regardless of success or failure.
# TYPE grpc_client_handled_total counter
grpc_client_handled_total{grpc_code="OK",grpc_method="Hello",grpc_service="greeter.Greeter",grpc_type="unary"} 2
`} {
		name := strings.Fields(want)[2]
		if err := testutil.GatherAndCompare(promReg, strings.NewReader(want), name); err != nil {
			t.Error(err)
		}
	}
}

// refusing is a Prometheus registerer that takes no collector.
type refusing struct{ prometheus.Registerer }

func (refusing) Register(prometheus.Collector) error { return errors.New("refused by test") }

// A registerer that refuses the collectors makes the service fail with
// its error, at Init.
func TestRefusedCollectorsFailTheService(t *testing.T) {
	svc := micro.NewService(micro.WithName("c"), micro.WithRegistry(memory.NewRegistry()), metrics.With(refusing{}))
	defer svc.Close()
	if err := svc.Init(micro.WithArgs([]string{})); err == nil || !strings.Contains(err.Error(), "refused by test") {
		t.Fatalf("Init = %v, want the registerer's error", err)
	}
}
