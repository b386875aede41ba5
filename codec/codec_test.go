package codec_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/microgrpc/microgrpc/codec"
	rawbytes "github.com/microgrpc/microgrpc/codec/bytes"
	"github.com/microgrpc/microgrpc/internal/greetertest"
	pb "github.com/microgrpc/microgrpc/proto/greeter"
)

const defaultTestTimeout = 10 * time.Second

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestProtoCodecIsGRPCs(t *testing.T) {
	if c := encoding.GetCodecV2("proto"); c == nil || c.Name() != "proto" {
		t.Fatal("grpc's proto codec is missing")
	}
	for _, n := range []string{"json", "bytes"} {
		if encoding.GetCodecV2(n) == nil {
			t.Errorf("codec %q not registered", n)
		}
	}
}

func TestForContentType(t *testing.T) {
	tests := []struct {
		ct, want string
	}{
		{"", "proto"},
		{"application/protobuf", "proto"},
		{"application/x-protobuf", "proto"},
		{"application/grpc", "proto"},
		{"application/grpc+proto", "proto"},
		{"application/json", "json"},
		{"Application/JSON; charset=utf-8", "json"},
		{"application/grpc+json", "json"},
		{"application/grpc;charset=utf-8", "proto"},
		{"application/grpc+json;charset=utf-8", "json"},
		{"application/octet-stream", "bytes"},
	}
	for _, tt := range tests {
		c, err := codec.ForContentType(tt.ct)
		if err != nil || c.Name() != tt.want {
			t.Errorf("ForContentType(%q) = %v, %v; want %s", tt.ct, c, err, tt.want)
		}
	}
	for _, ct := range []string{"text/xml", "application/grpc+xml", ";;;"} {
		if _, err := codec.ForContentType(ct); !errors.Is(err, codec.ErrUnknownContentType) || !strings.Contains(err.Error(), ct) {
			t.Errorf("ForContentType(%q) = %v, want ErrUnknownContentType naming it", ct, err)
		}
	}
	if got := codec.ContentType("json"); got != codec.ContentTypeJSON {
		t.Errorf("ContentType(json) = %q", got)
	}
}

type plain struct {
	Name  string `json:"name"`
	Count int    `json:"count"`
}

func TestRoundTrips(t *testing.T) {
	ev := &pb.Event{Id: "1", Timestamp: 42, Message: "hi"}
	for _, ct := range []string{codec.ContentTypeProto, codec.ContentTypeJSON} {
		data, err := codec.Marshal(ct, ev)
		if err != nil {
			t.Fatal(err)
		}
		var got pb.Event
		if err := codec.Unmarshal(ct, data, &got); err != nil {
			t.Fatal(err)
		}
		if !proto.Equal(&got, ev) {
			t.Errorf("%s round trip: got %v, want %v", ct, &got, ev)
		}
	}
	// Proto messages use the proto3 JSON mapping (int64 as a string).
	data, _ := codec.Marshal(codec.ContentTypeJSON, ev)
	if !strings.Contains(strings.ReplaceAll(string(data), " ", ""), `"timestamp":"42"`) {
		t.Errorf("JSON of a proto message = %s, want protojson", data)
	}
	// Plain Go values use encoding/json.
	data, err := codec.Marshal(codec.ContentTypeJSON, &plain{Name: "a", Count: 2})
	if err != nil || string(data) != `{"name":"a","count":2}` {
		t.Fatalf("plain JSON = %s, %v", data, err)
	}
	var p plain
	if err := codec.Unmarshal(codec.ContentTypeJSON, data, &p); err != nil || p != (plain{"a", 2}) {
		t.Fatalf("plain round trip = %+v, %v", p, err)
	}
	// Unknown JSON fields from a newer peer are accepted.
	var e pb.Event
	if err := codec.Unmarshal(codec.ContentTypeJSON, []byte(`{"id":"x","future":1}`), &e); err != nil || e.GetId() != "x" {
		t.Fatalf("unknown field: %v, %v", &e, err)
	}
	f := rawbytes.Frame("raw\x00frame")
	data, err = codec.Marshal(codec.ContentTypeBytes, &f)
	if err != nil {
		t.Fatal(err)
	}
	var back rawbytes.Frame
	if err := codec.Unmarshal(codec.ContentTypeBytes, data, &back); err != nil || string(back) != string(f) {
		t.Fatalf("bytes round trip = %q, %v", back, err)
	}
}

func TestBadInputIsAnErrorNotAPanic(t *testing.T) {
	tests := []struct {
		name, ct string
		data     []byte
		into     any
	}{
		{"malformed json", codec.ContentTypeJSON, []byte(`{"id":`), &pb.Event{}},
		{"json of the wrong type", codec.ContentTypeJSON, []byte(`{"timestamp":"soon"}`), &pb.Event{}},
		{"malformed json plain", codec.ContentTypeJSON, []byte(`[1,2`), &plain{}},
		{"malformed proto", codec.ContentTypeProto, []byte{0xff, 0xff, 0xff}, &pb.Event{}},
		{"proto into a non-message", codec.ContentTypeProto, []byte{}, &plain{}},
		{"bytes into a message", codec.ContentTypeBytes, []byte("x"), &pb.Event{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := codec.Unmarshal(tt.ct, tt.data, tt.into)
			if !errors.Is(err, codec.ErrCodec) || !strings.Contains(err.Error(), tt.ct) {
				t.Fatalf("Unmarshal = %v, want ErrCodec naming %s", err, tt.ct)
			}
		})
	}
	if _, err := codec.Marshal(codec.ContentTypeBytes, 42); !errors.Is(err, codec.ErrCodec) {
		t.Fatalf("Marshal(bytes, 42) = %v", err)
	}
}

// rawCodec sends a fixed body under any content-subtype, to reach a server
// with bytes a well-behaved client would never send. It is passed per call
// (grpc.ForceCodecV2), never registered.
type rawCodec struct {
	name string
	body []byte
}

func (c rawCodec) Name() string { return c.name }
func (c rawCodec) Marshal(any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(c.body)}, nil
}
func (c rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	return encoding.GetCodecV2("proto").Unmarshal(data, v)
}

func startServer(t *testing.T) pb.GreeterClient {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.InTapHandle(codec.StrictServerTap(nil)))
	pb.RegisterGreeterServer(srv, &greetertest.Server{Node: "n"})
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	cc, err := grpc.NewClient("passthrough:///"+lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return pb.NewGreeterClient(cc)
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), defaultTestTimeout)
	t.Cleanup(cancel)
	return ctx
}

func TestJSONCallAnsweredInJSON(t *testing.T) {
	client := startServer(t)
	var hdr metadata.MD
	rsp, err := client.Hello(testCtx(t), &pb.Request{Name: "json"}, grpc.CallContentSubtype("json"), grpc.Header(&hdr))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(rsp.GetMsg(), "Hello json"); diff != "" {
		t.Fatalf("(-got +want) %s", diff)
	}
	if got := hdr.Get("content-type"); len(got) != 1 || got[0] != "application/grpc+json" {
		t.Fatalf("response content-type %v, want application/grpc+json", got)
	}
}

func TestUnknownSubtypeUnimplemented(t *testing.T) {
	client := startServer(t)
	body, _ := proto.Marshal(&pb.Request{Name: "x"})
	_, err := client.Hello(testCtx(t), &pb.Request{}, grpc.ForceCodecV2(rawCodec{name: "xml", body: body}))
	if status.Code(err) != codes.Unimplemented || !strings.Contains(err.Error(), `"xml"`) {
		t.Fatalf("call with subtype xml = %v, want Unimplemented naming it", err)
	}
}

// grpc-go decodes the request inside the generated handler, before any
// interceptor, and answers a codec failure with its own status, Internal
// "grpc: failed to unmarshal the received message". The server keeps
// serving.
func TestMalformedBodiesRefusedAndServerKeepsServing(t *testing.T) {
	client := startServer(t)
	for _, c := range []rawCodec{
		{name: "json", body: []byte(`{"name":`)},
		{name: "proto", body: []byte{0x0a, 0xff, 0xff, 0xff, 0xff}},
	} {
		_, err := client.Hello(testCtx(t), &pb.Request{}, grpc.ForceCodecV2(c))
		if code := status.Code(err); code != codes.Internal && code != codes.InvalidArgument {
			t.Errorf("malformed %s body: %v, want grpc's codec error status", c.name, err)
		}
		if !strings.Contains(err.Error(), "unmarshal") {
			t.Errorf("malformed %s body: %v does not say it could not be decoded", c.name, err)
		}
	}
	if _, err := client.Hello(testCtx(t), &pb.Request{Name: "ok"}); err != nil {
		t.Fatalf("server stopped serving: %v", err)
	}
}

func FuzzJSONUnmarshal(f *testing.F) {
	for _, s := range []string{`{}`, `{"id":"1","timestamp":"2"}`, `{"id":`, `[]`, `null`, "\x00"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var e pb.Event
		_ = codec.Unmarshal(codec.ContentTypeJSON, data, &e)
		var p plain
		_ = codec.Unmarshal(codec.ContentTypeJSON, data, &p)
	})
}
