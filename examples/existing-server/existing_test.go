package main

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/microgrpc/microgrpc/internal/exampletest"
	"github.com/microgrpc/microgrpc/internal/netns"
	"github.com/microgrpc/microgrpc/micro"
	pb "github.com/microgrpc/microgrpc/proto/greeter"
	"github.com/microgrpc/microgrpc/resolver"
)

func TestMain(m *testing.M) { netns.VerifyTestMain(m, netns.ZeroconfProbe) }

// The existing server, wrapped, is found by name through the default
// registry, answers through its own handler and interceptor, and is gone
// from the registry once it stops.
func TestExistingServerFoundThroughRegistry(t *testing.T) {
	server := exampletest.Start(t, exampletest.Build(t, "."), nil)
	server.WaitFor("service started")

	client := micro.NewService(micro.WithName("client"))
	defer client.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rsp, err := pb.NewGreeterClient(client.Dial("legacy-greeter")).Hello(ctx, &pb.Request{Name: "John"}, grpc.WaitForReady(true))
	if err != nil {
		t.Fatal(err)
	}
	if rsp.GetMsg() != "Hello John from an existing server" {
		t.Fatalf("got %q", rsp.GetMsg())
	}
	server.WaitFor("/greeter.Greeter/Hello") // its own logging interceptor ran
	if err := server.Stop(); err != nil {
		t.Fatalf("stop: %v\n%s", err, server.Output())
	}
	reg, err := client.Registry()
	if err != nil {
		t.Fatal(err)
	}
	for {
		_, err := reg.GetService(ctx, "legacy-greeter")
		if errors.Is(err, resolver.ErrNotFound) {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("still registered after shutdown: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(server.Output(), "service stopped") {
		t.Fatalf("output:\n%s", server.Output())
	}
}
