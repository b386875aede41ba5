package micro_test

import (
	"bytes"
	"context"
	"flag"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/microgrpc/microgrpc/interceptors/shed"
	"github.com/microgrpc/microgrpc/micro"
	pb "github.com/microgrpc/microgrpc/proto/greeter"
	"github.com/microgrpc/microgrpc/resolver/memory"
)

// A service sheds by default: with shed.DefaultInitialLimit calls held in
// its handler, the next one is refused at once; with WithLoadShedding(false)
// it runs.
func TestLoadSheddingDefault(t *testing.T) {
	for _, on := range []bool{true, false} {
		var opts []micro.Option
		if !on {
			opts = append(opts, micro.WithLoadShedding(false))
		}
		var entered atomic.Int64
		release := make(chan struct{})
		hook := func(ctx context.Context, req *pb.Request) error {
			entered.Add(1)
			if req.GetName() == "hold" {
				select {
				case <-release:
				case <-ctx.Done():
				}
			}
			return nil
		}
		srv := startServiceHook(t, memory.NewRegistry(), "greeter", hook, opts...)
		client := pb.NewGreeterClient(plainConn(t, srv.svc.Address()))
		ctx := testCtx(t)
		var wg sync.WaitGroup
		for range shed.DefaultInitialLimit {
			wg.Go(func() { _, _ = client.Hello(ctx, &pb.Request{Name: "hold"}) })
		}
		for entered.Load() < shed.DefaultInitialLimit {
			if ctx.Err() != nil {
				t.Fatal("the held calls did not all start")
			}
			runtime.Gosched()
		}
		_, err := client.Hello(ctx, &pb.Request{Name: "next"})
		close(release)
		wg.Wait()
		st := status.Convert(err)
		switch {
		case on && (st.Code() != codes.Unavailable || !strings.HasPrefix(st.Message(), shed.RefusedMessage)):
			t.Fatalf("call %d with shedding on: %v, want Unavailable %q", shed.DefaultInitialLimit+1, err, shed.RefusedMessage)
		case !on && err != nil:
			t.Fatalf("call %d with shedding off: %v", shed.DefaultInitialLimit+1, err)
		}
	}
}

func TestLoadSheddingSetting(t *testing.T) {
	if _, err := initService(t, nil, map[string]string{"MICRO_SERVER_LOAD_SHEDDING": "sometimes"}); err == nil {
		t.Fatal("MICRO_SERVER_LOAD_SHEDDING=sometimes: no error")
	}
	if _, err := initService(t, nil, nil, "-server_load_shedding=false"); err != nil {
		t.Fatalf("-server_load_shedding=false: %v", err)
	}
	// Once Server() made the gRPC server, the setting cannot change it.
	svc := micro.NewService(micro.WithName("greeter"), micro.WithRegistry(memory.NewRegistry()))
	t.Cleanup(func() { svc.Close() })
	_ = svc.Server()
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(new(bytes.Buffer))
	if err := svc.Init(micro.WithFlagSet(fs), micro.WithEnv(env(map[string]string{"MICRO_SERVER_LOAD_SHEDDING": "false"}))); err == nil {
		t.Fatal("MICRO_SERVER_LOAD_SHEDDING=false after Server(): no error")
	}
}
