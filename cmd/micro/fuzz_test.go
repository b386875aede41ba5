package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/reflection"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/microgrpc/microgrpc/internal/greetertest"
	"github.com/microgrpc/microgrpc/micro/dynamic"
	pb "github.com/microgrpc/microgrpc/proto/greeter"
)

// wantNames is what the greeter must have received from input: each JSON
// value in turn, read as a greeter.Request with the generated type; or the
// number of the first value that is not one.
func wantNames(input []byte) ([]string, int) {
	dec := json.NewDecoder(bytes.NewReader(input))
	var names []string
	for n := 1; ; n++ {
		var raw json.RawMessage
		if err := dec.Decode(&raw); errors.Is(err, io.EOF) {
			return names, 0
		} else if err != nil {
			return nil, n
		}
		var req pb.Request
		if protojson.Unmarshal(raw, &req) != nil {
			return nil, n
		}
		names = append(names, req.GetName())
	}
}

// FuzzStreamInput feeds `micro call`'s reader of a client stream's
// requests (JSON values, one per line as a rule) any input, on a real
// call of greeter.Greeter/HelloMany to a server on 127.0.0.1: either every
// request arrives, in order, and the one response is printed, or the
// command fails naming the first bad request and the call does not
// complete (no response is printed for a part of the input).
func FuzzStreamInput(f *testing.F) {
	for _, in := range []string{
		"", "\n", `{"name":"a"}`, "{\"name\":\"a\"}\n{\"name\":\"b\"}\n", `{"name":"a"} {"name":"b"}`,
		"{\n  \"name\": \"multi\",\n  \"count\": 2\n}\n{}", "{}\n{\"name\":1}\n{}", "{}\n{\"nme\":\"x\"}",
		"{}\n{\"name\":\"a\"", "[]", "null", "{}garbage", "\xef\xbb\xbf{}", "{\"name\":\"\\ud800\"}", "{\"name\":\"a, b\"}",
		"{}{}{}{}{}{}{}{}{}{}", "{\"count\":\"12\"}\n{\"count\":1e2}\n{\"count\":99999999999}",
	} {
		f.Add([]byte(in))
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	srv := grpc.NewServer()
	pb.RegisterGreeterServer(srv, &greetertest.Server{Node: "n1"})
	reflection.Register(srv)
	served := make(chan struct{})
	go func() { srv.Serve(lis); close(served) }()
	f.Cleanup(func() { srv.Stop(); <-served })
	cc, err := grpc.NewClient("passthrough:///"+lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { cc.Close() })
	dc := dynamic.NewClient(cc)
	f.Fuzz(func(t *testing.T, input []byte) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		md, err := dc.Method(ctx, "greeter.Greeter/HelloMany")
		if err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		k := &call{c: &cmdline{stdio: &stdio{out: &out}}, dc: dc, md: md, service: "greeter"}
		err = k.clientStream(ctx, bytes.NewReader(input))
		names, bad := wantNames(input)
		if bad > 0 {
			if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("request %d of the input", bad)) {
				t.Fatalf("input %q: error %v, want one about request %d", input, err, bad)
			}
			if out.Len() > 0 {
				t.Fatalf("input %q with a bad request %d: the call completed, printing %q", input, bad, out.String())
			}
			return
		}
		if err != nil {
			t.Fatalf("input %q: %v", input, err)
		}
		var rsp pb.Response
		line, rest, _ := bytes.Cut(out.Bytes(), []byte("\n"))
		if err := protojson.Unmarshal(line, &rsp); err != nil || len(rest) > 0 {
			t.Fatalf("input %q: printed %q, want one JSON response line (%v)", input, out.String(), err)
		}
		if want := "Hello " + strings.Join(names, ", "); rsp.GetMsg() != want || rsp.GetNode() != "n1" {
			t.Fatalf("input %q: response %q from %q, want %q from n1", input, rsp.GetMsg(), rsp.GetNode(), want)
		}
	})
}
