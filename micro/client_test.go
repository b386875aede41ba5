package micro_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/microgrpc/microgrpc/micro"
	pb "github.com/microgrpc/microgrpc/proto/greeter"
	"github.com/microgrpc/microgrpc/resolver/memory"
)

func TestRequestTimeoutBoundsCalls(t *testing.T) {
	reg := memory.NewRegistry()
	startServiceHook(t, reg, "blocking", func(ctx context.Context, _ *pb.Request) error {
		<-ctx.Done() // answers only when the caller gives up
		return ctx.Err()
	})
	client := newClient(t, reg, micro.WithRequestTimeout(100*time.Millisecond))
	start := time.Now()
	_, err := pb.NewGreeterClient(client.Dial("blocking")).Hello(testCtx(t), &pb.Request{}, grpc.WaitForReady(true))
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("call = %v, want DeadlineExceeded from the default request timeout", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("call took %v, want about 100ms", d)
	}
}

func TestJSONCallThroughDial(t *testing.T) {
	reg := memory.NewRegistry()
	startService(t, reg, "greeter")
	client := pb.NewGreeterClient(newClient(t, reg).Dial("greeter"))
	var hdr metadata.MD
	rsp, err := client.Hello(testCtx(t), &pb.Request{Name: "json"}, grpc.CallContentSubtype("json"), grpc.Header(&hdr))
	if err != nil || rsp.GetMsg() != "Hello json" {
		t.Fatalf("JSON call = %v, %v", rsp, err)
	}
	if ct := hdr.Get("content-type"); len(ct) != 1 || ct[0] != "application/grpc+json" {
		t.Fatalf("server answered with content-type %v, want application/grpc+json", ct)
	}
}

// xmlCodec is a client-side codec the server does not know; it is passed
// per call, never registered.
type xmlCodec struct{}

func (xmlCodec) Name() string { return "xml" }
func (xmlCodec) Marshal(v any) (mem.BufferSlice, error) {
	b, err := proto.Marshal(v.(proto.Message))
	return mem.BufferSlice{mem.SliceBuffer(b)}, err
}
func (xmlCodec) Unmarshal(data mem.BufferSlice, v any) error {
	return proto.Unmarshal(data.Materialize(), v.(proto.Message))
}

func TestUnknownContentSubtypeUnimplemented(t *testing.T) {
	reg := memory.NewRegistry()
	startService(t, reg, "greeter")
	client := pb.NewGreeterClient(newClient(t, reg).Dial("greeter"))
	_, err := client.Hello(testCtx(t), &pb.Request{Name: "x"}, grpc.ForceCodecV2(xmlCodec{}))
	if status.Code(err) != codes.Unimplemented || !strings.Contains(err.Error(), `"xml"`) {
		t.Fatalf("call with content-subtype xml = %v, want Unimplemented naming it", err)
	}
}

// malformedCodec sends a fixed, broken body under a real subtype.
type malformedCodec struct {
	name string
	body []byte
}

func (c malformedCodec) Name() string { return c.name }
func (c malformedCodec) Marshal(any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(c.body)}, nil
}
func (c malformedCodec) Unmarshal(data mem.BufferSlice, v any) error {
	return proto.Unmarshal(data.Materialize(), v.(proto.Message))
}

func TestMalformedBodyRefusedServerKeepsServing(t *testing.T) {
	srv := startService(t, memory.NewRegistry(), "greeter")
	client := pb.NewGreeterClient(plainConn(t, srv.svc.Address()))
	for _, c := range []malformedCodec{
		{"proto", []byte{0x0a, 0xff, 0xff, 0xff, 0xff}},
		{"json", []byte(`{"name": 12`)},
	} {
		_, err := client.Hello(testCtx(t), &pb.Request{}, grpc.ForceCodecV2(c))
		// grpc-go decodes before any interceptor runs and answers with its
		// own codec status: Internal, "failed to unmarshal".
		if code := status.Code(err); (code != codes.Internal && code != codes.InvalidArgument) || !strings.Contains(err.Error(), "unmarshal") {
			t.Errorf("malformed %s body: %v", c.name, err)
		}
	}
	if _, err := client.Hello(testCtx(t), &pb.Request{Name: "after"}); err != nil {
		t.Fatalf("server stopped serving after malformed bodies: %v", err)
	}
}

// --client_retries reaches the retry policy: with none, a node answering
// UNAVAILABLE fails calls; with the default, they are retried elsewhere.
func TestRetriesSetting(t *testing.T) {
	reg := memory.NewRegistry()
	startServiceHook(t, reg, "flaky", func(context.Context, *pb.Request) error {
		return status.Error(codes.Unavailable, "down")
	}, micro.WithID("bad"))
	startService(t, reg, "flaky", micro.WithID("good"))
	count := func(c *micro.Service) (failed int) {
		g := pb.NewGreeterClient(c.Dial("flaky"))
		for range 40 {
			if _, err := g.Hello(testCtx(t), &pb.Request{}, grpc.WaitForReady(true)); err != nil {
				failed++
			}
		}
		return failed
	}
	if n := count(newClient(t, reg)); n != 0 {
		t.Fatalf("%d of 40 calls failed with retries on", n)
	}
	if n := count(newClient(t, reg, micro.WithRetries(0))); n == 0 {
		t.Fatal("no call failed with retries off: the setting did not reach the retry policy")
	}
}
