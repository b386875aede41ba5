package codec_test

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/microgrpc/microgrpc/codec"
	"github.com/microgrpc/microgrpc/internal/greetertest"
	pb "github.com/microgrpc/microgrpc/proto/greeter"
)

// startStrictServer serves the greeter behind the strict tap on loopback and
// returns its address, for clients that are not grpc-go's.
func startStrictServer(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.InTapHandle(codec.StrictServerTap(nil)))
	pb.RegisterGreeterServer(srv, &greetertest.Server{Node: "n"})
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	return lis.Addr().String()
}

// rawReply is what a raw HTTP/2 client sees of a unary call.
type rawReply struct {
	code    codes.Code
	message string // grpc-message, percent-decoded
	ct      string // response content-type
	body    []byte // the first length-prefixed message, if any
}

// rawHello calls Greeter.Hello over plain HTTP/2 with exactly the
// content-type given, which grpc-go's client cannot send (it always writes
// "application/grpc+" and the codec name). msg is the encoded request.
func rawHello(t *testing.T, addr, contentType string, msg []byte) rawReply {
	t.Helper()
	var protocols http.Protocols
	protocols.SetUnencryptedHTTP2(true) // h2c with prior knowledge, as gRPC without TLS
	tr := &http.Transport{Protocols: &protocols}
	defer tr.CloseIdleConnections()

	frame := make([]byte, 5+len(msg)) // uncompressed flag, big-endian length, message
	binary.BigEndian.PutUint32(frame[1:5], uint32(len(msg)))
	copy(frame[5:], msg)
	req, err := http.NewRequestWithContext(testCtx(t), http.MethodPost, "http://"+addr+pb.Greeter_Hello_FullMethodName, bytes.NewReader(frame))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("TE", "trailers")
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatalf("content-type %.80q: %v", contentType, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("content-type %.80q: reading the response: %v", contentType, err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("content-type %.80q: HTTP status %d, want 200", contentType, resp.StatusCode)
	}
	// A refused call is Trailers-Only: its status arrives with the headers.
	get := func(k string) string {
		if v := resp.Trailer.Get(k); v != "" {
			return v
		}
		return resp.Header.Get(k)
	}
	n, err := strconv.Atoi(get("grpc-status"))
	if err != nil {
		t.Fatalf("content-type %.80q: grpc-status %q: %v", contentType, get("grpc-status"), err)
	}
	r := rawReply{code: codes.Code(n), message: get("grpc-message"), ct: resp.Header.Get("Content-Type")}
	if m, err := url.PathUnescape(r.message); err == nil {
		r.message = m
	}
	if len(data) >= 5 {
		size := binary.BigEndian.Uint32(data[1:5])
		if uint64(len(data)-5) < uint64(size) {
			t.Fatalf("content-type %.80q: truncated response message", contentType)
		}
		r.body = data[5 : 5+size]
	}
	return r
}

// The gRPC spec's Content-Type is "application/grpc" [("+proto" / "+json" /
// {custom})], and an HTTP media type may carry parameters: they must not
// change the codec nor get the call refused.
func TestContentTypeParametersAccepted(t *testing.T) {
	addr := startStrictServer(t)
	protoReq, err := proto.Marshal(&pb.Request{Name: "p"})
	if err != nil {
		t.Fatal(err)
	}
	jsonReq := []byte(`{"name":"j"}`)
	tests := []struct {
		ct   string
		body []byte
		json bool // the reply must be JSON, not protobuf
		want string
	}{
		{"application/grpc;charset=utf-8", protoReq, false, "Hello p"},
		{"application/grpc; charset=utf-8", protoReq, false, "Hello p"},
		{"application/grpc+proto;charset=utf-8", protoReq, false, "Hello p"},
		{"application/grpc+proto; charset=utf-8", protoReq, false, "Hello p"},
		{"application/grpc+json;charset=utf-8", jsonReq, true, "Hello j"},
		{"application/grpc+json; charset=utf-8", jsonReq, true, "Hello j"},
	}
	for _, tt := range tests {
		t.Run(tt.ct, func(t *testing.T) {
			r := rawHello(t, addr, tt.ct, tt.body)
			if r.code != codes.OK {
				t.Fatalf("status %v %q, want OK", r.code, r.message)
			}
			var rsp pb.Response
			if tt.json {
				err = protojson.Unmarshal(r.body, &rsp)
			} else {
				err = proto.Unmarshal(r.body, &rsp)
			}
			if err != nil {
				t.Fatalf("reply %q (content-type %q) does not decode with the request's codec: %v", r.body, r.ct, err)
			}
			if rsp.GetMsg() != tt.want {
				t.Fatalf("reply %q, want %q", rsp.GetMsg(), tt.want)
			}
		})
	}
}

// grpc-go's server looks a codec up by the literal text after "+" (case and
// parameters included) and silently decodes as protobuf when none is
// registered under it. Where that would decode a body with another codec
// than the content-type names, the strict server refuses the call instead.
func TestContentTypeGRPCGoWouldMisreadRefused(t *testing.T) {
	addr := startStrictServer(t)
	for _, ct := range []string{
		"application/grpc+JSON",                // grpc-go looks up "JSON" and finds nothing
		"application/grpc+json;charset=UTF-8",  // only the lower-case spelling is registered
		"application/grpc+json;indent=2",       // unknown parameter
		"application/grpc+bytes;charset=utf-8", // no alias: charset means nothing for raw frames
	} {
		t.Run(ct, func(t *testing.T) {
			r := rawHello(t, addr, ct, []byte(`{"name":"j"}`))
			if r.code != codes.Unimplemented || !strings.Contains(r.message, `"proto" instead`) {
				t.Fatalf("status %v %q, want Unimplemented saying it would be read as protobuf", r.code, r.message)
			}
		})
	}
}

func TestUnknownSubtypeWithParametersNamesTheSubtype(t *testing.T) {
	addr := startStrictServer(t)
	r := rawHello(t, addr, "application/grpc+xml;charset=utf-8", nil)
	if r.code != codes.Unimplemented || !strings.Contains(r.message, `"xml"`) {
		t.Fatalf("status %v %q, want Unimplemented naming subtype \"xml\"", r.code, r.message)
	}
}

// A client chooses the subtype, so the error must not echo an arbitrarily
// long one back (into logs, and a grpc-message of that size).
func TestLongUnknownSubtypeCutInError(t *testing.T) {
	addr := startStrictServer(t)
	cc, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	long := strings.Repeat("x", 4000)
	_, err = pb.NewGreeterClient(cc).Hello(testCtx(t), &pb.Request{}, grpc.ForceCodecV2(rawCodec{name: long}))
	msg := status.Convert(err).Message()
	if status.Code(err) != codes.Unimplemented {
		t.Fatalf("code %v, want Unimplemented", status.Code(err))
	}
	if strings.Contains(msg, strings.Repeat("x", 65)) || len(msg) > 400 {
		t.Fatalf("message of %d bytes quotes too much of the subtype: %.200q", len(msg), msg)
	}
	for _, want := range []string{"xxxxxxxx", "...", "4000", "proto", "json", "bytes"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message %q lacks %q", msg, want)
		}
	}
}
