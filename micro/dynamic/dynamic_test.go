package dynamic_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/reflection"
	refpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	v1alphagrpc "google.golang.org/grpc/reflection/grpc_reflection_v1alpha"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"

	"github.com/microgrpc/microgrpc/internal/greetertest"
	"github.com/microgrpc/microgrpc/micro/dynamic"
	pb "github.com/microgrpc/microgrpc/proto/greeter"
)

const testTimeout = 20 * time.Second

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return c
}

// server is a greeter server on 127.0.0.1; reflectionStreams counts the
// reflection calls it served, of either version.
type server struct {
	cc                *grpc.ClientConn
	reflectionStreams atomic.Int32
	methods           sync.Map // reflection method paths called
}

// start serves the greeter (node "n1") with register's extra services and
// returns a connection to it; both end with the test.
func start(t *testing.T, hook func(context.Context, *pb.Request) error, register func(*grpc.Server)) *server {
	t.Helper()
	s := &server{}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.StreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if strings.HasPrefix(info.FullMethod, "/grpc.reflection.") {
			s.reflectionStreams.Add(1)
			s.methods.Store(info.FullMethod, true)
		}
		return handler(srv, ss)
	}))
	pb.RegisterGreeterServer(srv, &greetertest.Server{Node: "n1", Hook: hook})
	if register != nil {
		register(srv)
	}
	done := make(chan struct{})
	go func() { srv.Serve(lis); close(done) }()
	t.Cleanup(func() { srv.Stop(); <-done })
	s.cc, err = grpc.NewClient("passthrough:///"+lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.cc.Close() })
	return s
}

func withReflection(srv *grpc.Server) { reflection.Register(srv) }

// Every spelling of a method name reaches it.
func TestMethodNames(t *testing.T) {
	s := start(t, nil, withReflection)
	c := dynamic.NewClient(s.cc)
	for _, name := range []string{"/greeter.Greeter/Hello", "greeter.Greeter/Hello", "greeter.Greeter.Hello", "Greeter.Hello", "Greeter/Hello"} {
		rsp, err := c.InvokeJSON(ctx(t), name, []byte(`{"name":"John"}`))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got, want := string(rsp), `{"msg":"Hello John","node":"n1"}`; got != want {
			t.Fatalf("%s: %s, want %s", name, got, want)
		}
	}
	md, err := c.Method(ctx(t), "Greeter.HelloStream")
	if err != nil {
		t.Fatal(err)
	}
	if got := dynamic.FullMethod(md); got != "/greeter.Greeter/HelloStream" || !md.IsStreamingServer() || md.IsStreamingClient() {
		t.Fatalf("HelloStream resolves to %s (client streaming %v, server streaming %v)", got, md.IsStreamingClient(), md.IsStreamingServer())
	}
	names, err := c.Services(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if want := "greeter.Greeter,grpc.reflection.v1.ServerReflection,grpc.reflection.v1alpha.ServerReflection"; strings.Join(names, ",") != want {
		t.Fatalf("services %v, want %s", names, want)
	}
}

// Dynamic messages built from the descriptor, and generated ones, are both
// requests; a message of another type is refused before anything is sent.
func TestInvokeMessages(t *testing.T) {
	s := start(t, nil, withReflection)
	c := dynamic.NewClient(s.cc)
	md, err := c.Method(ctx(t), "Greeter.Hello")
	if err != nil {
		t.Fatal(err)
	}
	req := dynamicpb.NewMessage(md.Input())
	req.Set(md.Input().Fields().ByName("name"), protoreflect.ValueOfString("Jane"))
	for _, r := range []proto.Message{req, &pb.Request{Name: "Jane"}} {
		rsp, err := c.Invoke(ctx(t), "Greeter.Hello", r)
		if err != nil {
			t.Fatal(err)
		}
		if got := rsp.Get(md.Output().Fields().ByName("msg")).String(); got != "Hello Jane" {
			t.Fatalf("msg %q", got)
		}
	}
	_, err = c.Invoke(ctx(t), "Greeter.Hello", &pb.Event{})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "greeter.Event") {
		t.Fatalf("Invoke with a greeter.Event: %v, want InvalidArgument naming the type", err)
	}
	_, err = c.Invoke(ctx(t), "Greeter.Hello", nil)
	if status.Code(err) != codes.InvalidArgument || !errors.Is(err, dynamic.ErrBadRequest) {
		t.Fatalf("Invoke with nil: %v, want InvalidArgument", err)
	}
}

// The three streaming kinds, with JSON and with messages.
func TestStreams(t *testing.T) {
	s := start(t, nil, withReflection)
	c := dynamic.NewClient(s.cc)

	t.Run("server", func(t *testing.T) {
		st, err := c.NewStream(ctx(t), "Greeter.HelloStream")
		if err != nil {
			t.Fatal(err)
		}
		if err := st.SendJSON([]byte(`{"name":"J","count":3}`)); err != nil {
			t.Fatal(err)
		}
		st.CloseSend()
		got := recvAll(t, st)
		if want := []string{`{"msg":"Hello J #1","node":"n1"}`, `{"msg":"Hello J #2","node":"n1"}`, `{"msg":"Hello J #3","node":"n1"}`}; fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("got %v, want %v", got, want)
		}
	})
	t.Run("client", func(t *testing.T) {
		st, err := c.NewStream(ctx(t), "greeter.Greeter/HelloMany")
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range []string{"a", "b"} {
			if err := st.Send(&pb.Request{Name: n}); err != nil {
				t.Fatal(err)
			}
		}
		if err := st.SendJSON([]byte(`{"name":"c"}`)); err != nil {
			t.Fatal(err)
		}
		st.CloseSend()
		if got := recvAll(t, st); len(got) != 1 || got[0] != `{"msg":"Hello a, b, c","node":"n1"}` {
			t.Fatalf("got %v", got)
		}
	})
	t.Run("bidi", func(t *testing.T) {
		st, err := c.NewStream(ctx(t), "Greeter.Chat")
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range []string{"x", "y"} {
			if err := st.SendJSON([]byte(`{"name":"` + n + `"}`)); err != nil {
				t.Fatal(err)
			}
			rsp, err := st.Recv()
			if err != nil {
				t.Fatal(err)
			}
			if got := rsp.Get(st.Method().Output().Fields().ByName("msg")).String(); got != "Hello "+n {
				t.Fatalf("chat answered %q", got)
			}
		}
		st.CloseSend()
		if rest := recvAll(t, st); len(rest) != 0 {
			t.Fatalf("more answers after CloseSend: %v", rest)
		}
		if _, err := st.Header(); err != nil {
			t.Fatal(err)
		}
		_ = st.Trailer()
	})
	t.Run("unary as a stream", func(t *testing.T) {
		st, err := c.NewStream(ctx(t), "Greeter.Hello")
		if err != nil {
			t.Fatal(err)
		}
		st.SendJSON([]byte(`{"name":"u"}`))
		st.CloseSend()
		if got := recvAll(t, st); len(got) != 1 || got[0] != `{"msg":"Hello u","node":"n1"}` {
			t.Fatalf("got %v", got)
		}
	})
}

func recvAll(t *testing.T, st *dynamic.Stream) []string {
	t.Helper()
	var out []string
	for {
		js, err := st.RecvJSON()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, string(js))
	}
}

// Bad input is an error with the code that says what is wrong and a
// message that says how; the server's own errors come back unchanged.
func TestErrors(t *testing.T) {
	s := start(t, func(_ context.Context, req *pb.Request) error {
		switch req.GetName() {
		case "nobody":
			return status.Error(codes.PermissionDenied, "not you")
		case "invalid":
			return status.Error(codes.InvalidArgument, "no such name")
		}
		return nil
	}, withReflection)
	c := dynamic.NewClient(s.cc)
	tests := []struct {
		name, method, req string
		code              codes.Code
		says              []string
	}{
		{"unknown service", "Nope.Hello", `{}`, codes.NotFound, []string{`no service "Nope"`, "greeter.Greeter"}},
		{"unknown method", "greeter.Greeter/Nope", `{}`, codes.NotFound, []string{`no method "Nope"`, "Chat, Hello, HelloMany, HelloStream"}},
		{"no service part", "Hello", `{}`, codes.InvalidArgument, []string{`"Hello"`, "greeter.Greeter/Hello"}},
		{"empty method", "greeter.Greeter/", `{}`, codes.InvalidArgument, []string{"want service and method"}},
		{"empty name", "", `{}`, codes.InvalidArgument, []string{"want service and method"}},
		{"malformed JSON", "Greeter.Hello", `{"name":`, codes.InvalidArgument, []string{"not a valid greeter.Request in JSON"}},
		{"unknown field", "Greeter.Hello", `{"nme":"x"}`, codes.InvalidArgument, []string{"nme"}},
		{"wrong type", "Greeter.Hello", `{"name":3}`, codes.InvalidArgument, []string{"name"}},
		{"streaming method", "Greeter.HelloStream", `{}`, codes.InvalidArgument, []string{"server streaming", "NewStream"}},
		{"server error", "Greeter.Hello", `{"name":"nobody"}`, codes.PermissionDenied, []string{"not you"}},
		{"server's InvalidArgument", "Greeter.Hello", `{"name":"invalid"}`, codes.InvalidArgument, []string{"no such name"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := c.InvokeJSON(ctx(t), tt.method, []byte(tt.req))
			if status.Code(err) != tt.code {
				t.Fatalf("%v, want code %v", err, tt.code)
			}
			for _, w := range tt.says {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%q does not say %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("%q is more than one line", err)
			}
			// The request's own faults are told from the server's.
			if bad := tt.code == codes.InvalidArgument && tt.name != "server's InvalidArgument"; errors.Is(err, dynamic.ErrBadRequest) != bad {
				t.Errorf("errors.Is(%q, ErrBadRequest) = %v, want %v", err, !bad, bad)
			}
		})
	}
	_, err := c.NewStream(ctx(t), "Greeter.Nope")
	if status.Code(err) != codes.NotFound {
		t.Fatalf("NewStream of an unknown method: %v", err)
	}
	st, err := c.NewStream(ctx(t), "Greeter.Chat")
	if err != nil {
		t.Fatal(err)
	}
	if err := st.SendJSON([]byte(`[`)); status.Code(err) != codes.InvalidArgument || !errors.Is(err, dynamic.ErrBadRequest) {
		t.Fatalf("SendJSON of malformed JSON: %v", err)
	}
	if err := st.Send(&pb.Response{}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("Send of a response type: %v", err)
	}
	st.CloseSend()
	recvAll(t, st)
}

// A server without reflection: Unimplemented, saying that reflection is
// missing and what to do, after trying both versions.
func TestNoReflection(t *testing.T) {
	s := start(t, nil, nil)
	c := dynamic.NewClient(s.cc)
	for range 2 { // the second time too: a failure is not cached as success
		_, err := c.InvokeJSON(ctx(t), "greeter.Greeter/Hello", []byte(`{}`))
		if status.Code(err) != codes.Unimplemented {
			t.Fatalf("%v, want Unimplemented", err)
		}
		for _, w := range []string{"does not serve gRPC reflection", "v1", "v1alpha", "reflection.Register"} {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%q does not say %q", err, w)
			}
		}
	}
}

// A server with only v1alpha (grpc-go before 1.57, other languages' older
// servers) is spoken to with v1alpha, and once that is known v1 is not
// tried again.
func TestV1AlphaFallback(t *testing.T) {
	s := start(t, nil, func(srv *grpc.Server) {
		v1alphagrpc.RegisterServerReflectionServer(srv, reflection.NewServer(reflection.ServerOptions{Services: srv}))
	})
	c := dynamic.NewClient(s.cc)
	if _, err := c.InvokeJSON(ctx(t), "Greeter.Hello", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Method(ctx(t), "Greeter.Chat"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Service(ctx(t), "grpc.reflection.v1alpha.ServerReflection"); err != nil {
		t.Fatal(err)
	}
	// v1 was tried once (the server said Unimplemented before the
	// interceptor), v1alpha served every lookup.
	if _, ok := s.methods.Load("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"); ok {
		t.Fatal("a v1 reflection stream reached a server without v1")
	}
	if n := s.reflectionStreams.Load(); n != 3 {
		t.Fatalf("%d v1alpha streams, want 3 (list, greeter.Greeter, the reflection service)", n)
	}
}

// Descriptors are learned once per Client: calls after the first ask
// nothing more, from one goroutine or many at once.
func TestDescriptorsAreCached(t *testing.T) {
	s := start(t, nil, withReflection)
	c := dynamic.NewClient(s.cc)
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for range 16 {
		wg.Go(func() {
			_, err := c.InvokeJSON(ctx(t), "Greeter.Hello", []byte(`{"name":"x"}`))
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	first := s.reflectionStreams.Load()
	if first > 2 {
		t.Fatalf("%d reflection streams for 16 concurrent first calls, want 2 (list, file)", first)
	}
	for _, m := range []string{"Greeter.Hello", "greeter.Greeter/HelloStream", "Greeter.Chat"} {
		if _, err := c.Method(ctx(t), m); err != nil {
			t.Fatal(err)
		}
	}
	for range 20 {
		if _, err := c.InvokeJSON(ctx(t), "Greeter.Hello", []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
	}
	if n := s.reflectionStreams.Load(); n != first {
		t.Fatalf("%d reflection streams after the first calls, %d after more: descriptors are not cached", first, n)
	}
	// Another Client (another connection's) learns on its own.
	if _, err := dynamic.NewClient(s.cc).Method(ctx(t), "Greeter.Hello"); err != nil {
		t.Fatal(err)
	}
	if s.reflectionStreams.Load() == first {
		t.Fatal("a new Client used another Client's descriptors")
	}
}

// A method whose types live in files imported by its service's file,
// which the server sends only when asked for them by name: the Client
// fetches the imports too. The fake reflection server below sends exactly
// the file asked for, as some non-Go servers do.
func TestImportsAreFetched(t *testing.T) {
	fake := &fileByFileServer{}
	s := start(t, nil, func(srv *grpc.Server) {
		refpb.RegisterServerReflectionServer(srv, fake)
		testpb.RegisterTestServiceServer(srv, testpb.UnimplementedTestServiceServer{})
		healthpb.RegisterHealthServer(srv, health.NewServer())
	})
	c := dynamic.NewClient(s.cc)
	md, err := c.Method(ctx(t), "TestService.UnaryCall")
	if err != nil {
		t.Fatal(err)
	}
	if md.Input().FullName() != "grpc.testing.SimpleRequest" || md.Input().ParentFile().Path() != "grpc/testing/messages.proto" {
		t.Fatalf("UnaryCall takes %s from %s", md.Input().FullName(), md.Input().ParentFile().Path())
	}
	if got := fake.asked(); !strings.Contains(got, "file grpc/testing/messages.proto") || !strings.Contains(got, "file grpc/testing/empty.proto") {
		t.Fatalf("the client asked %s; want the imports by file name", got)
	}
	_, err = c.InvokeJSON(ctx(t), "grpc.testing.TestService/EmptyCall", []byte(`{}`))
	if status.Code(err) != codes.Unimplemented || strings.Contains(err.Error(), "reflection") {
		t.Fatalf("EmptyCall on an unimplemented server: %v, want the server's Unimplemented", err)
	}
	// The health service's file is in the server's answers too.
	if _, err := c.InvokeJSON(ctx(t), "grpc.health.v1.Health/Check", []byte(`{"service":""}`)); err != nil {
		t.Fatal(err)
	}
}

// fileByFileServer is a reflection v1 server that answers
// FileContainingSymbol with the defining file alone, and FileByFilename,
// from the program's own registry.
type fileByFileServer struct {
	refpb.UnimplementedServerReflectionServer
	mu  sync.Mutex
	log []string
}

func (f *fileByFileServer) asked() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return strings.Join(f.log, "; ")
}

func (f *fileByFileServer) ServerReflectionInfo(stream refpb.ServerReflection_ServerReflectionInfoServer) error {
	for {
		req, err := stream.Recv()
		if err != nil {
			return nil
		}
		rsp := &refpb.ServerReflectionResponse{OriginalRequest: req}
		var fd protoreflect.FileDescriptor
		switch r := req.GetMessageRequest().(type) {
		case *refpb.ServerReflectionRequest_ListServices:
			rsp.MessageResponse = &refpb.ServerReflectionResponse_ListServicesResponse{ListServicesResponse: &refpb.ListServiceResponse{
				Service: []*refpb.ServiceResponse{{Name: "grpc.testing.TestService"}, {Name: "greeter.Greeter"}, {Name: "grpc.health.v1.Health"}}}}
		case *refpb.ServerReflectionRequest_FileContainingSymbol:
			f.note("symbol " + r.FileContainingSymbol)
			d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(r.FileContainingSymbol))
			if err == nil {
				fd = d.ParentFile()
			}
		case *refpb.ServerReflectionRequest_FileByFilename:
			f.note("file " + r.FileByFilename)
			fd, _ = protoregistry.GlobalFiles.FindFileByPath(r.FileByFilename)
		}
		switch {
		case rsp.MessageResponse != nil:
		case fd == nil:
			rsp.MessageResponse = &refpb.ServerReflectionResponse_ErrorResponse{ErrorResponse: &refpb.ErrorResponse{ErrorCode: int32(codes.NotFound), ErrorMessage: "not found"}}
		default:
			raw, _ := proto.Marshal(protodesc.ToFileDescriptorProto(fd))
			rsp.MessageResponse = &refpb.ServerReflectionResponse_FileDescriptorResponse{FileDescriptorResponse: &refpb.FileDescriptorResponse{FileDescriptorProto: [][]byte{raw}}}
		}
		if err := stream.Send(rsp); err != nil {
			return err
		}
	}
}

func (f *fileByFileServer) note(s string) {
	f.mu.Lock()
	f.log = append(f.log, s)
	f.mu.Unlock()
}

// Two services with one short name: the short name is refused naming both,
// the full names work.
func TestAmbiguousShortName(t *testing.T) {
	other := otherGreeterFile(t)
	files := new(protoregistry.Files)
	for _, fd := range []protoreflect.FileDescriptor{pb.File_greeter_greeter_proto, other} {
		if err := files.RegisterFile(fd); err != nil {
			t.Fatal(err)
		}
	}
	s := start(t, nil, func(srv *grpc.Server) {
		refpb.RegisterServerReflectionServer(srv, reflection.NewServerV1(reflection.ServerOptions{
			Services: twoGreeters{srv}, DescriptorResolver: files,
		}))
	})
	c := dynamic.NewClient(s.cc)
	_, err := c.Method(ctx(t), "Greeter.Hello")
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "greeter.Greeter, other.Greeter") {
		t.Fatalf("Greeter.Hello with two Greeters: %v, want InvalidArgument naming both", err)
	}
	md, err := c.Method(ctx(t), "other.Greeter/Hello")
	if err != nil || md.Input().FullName() != "other.Request" {
		t.Fatalf("other.Greeter/Hello: %v, %v", md, err)
	}
	if _, err := c.InvokeJSON(ctx(t), "greeter.Greeter/Hello", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
}

// twoGreeters lists other.Greeter next to the server's real services.
type twoGreeters struct{ srv *grpc.Server }

func (g twoGreeters) GetServiceInfo() map[string]grpc.ServiceInfo {
	m := g.srv.GetServiceInfo()
	m["other.Greeter"] = grpc.ServiceInfo{}
	return m
}

func otherGreeterFile(t *testing.T) protoreflect.FileDescriptor {
	t.Helper()
	str := func(s string) *string { return &s }
	fdp := &descriptorpb.FileDescriptorProto{
		Name: str("other/greeter.proto"), Package: str("other"), Syntax: str("proto3"),
		MessageType: []*descriptorpb.DescriptorProto{{Name: str("Request")}, {Name: str("Response")}},
		Service: []*descriptorpb.ServiceDescriptorProto{{Name: str("Greeter"), Method: []*descriptorpb.MethodDescriptorProto{
			{Name: str("Hello"), InputType: str(".other.Request"), OutputType: str(".other.Response")},
		}}},
	}
	fd, err := protodesc.NewFile(fdp, nil)
	if err != nil {
		t.Fatal(err)
	}
	return fd
}

// A connection whose calls fail keeps the call's code, saying what the
// Client was doing.
func TestUnreachableServer(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close() // nothing listens there now
	cc, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	_, err = dynamic.NewClient(cc).InvokeJSON(ctx(t), "Greeter.Hello", []byte(`{}`))
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "reflection") {
		t.Fatalf("%v, want Unavailable from the reflection lookup", err)
	}
}
