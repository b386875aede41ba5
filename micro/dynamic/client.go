package dynamic

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/dynamicpb"
)

// ErrBadRequest is wrapped by the errors about the request itself, found
// before anything is sent (InvalidArgument): a malformed method name, an
// ambiguous short name, JSON that is not the method's request type, a
// message of the wrong type, a unary call of a streaming method. A caller
// tells them from the server's own InvalidArgument with errors.Is.
var ErrBadRequest = errors.New("dynamic: bad request")

// badRequestError is an InvalidArgument status that is ErrBadRequest.
type badRequestError struct{ st *status.Status }

func (e *badRequestError) Error() string              { return e.st.Err().Error() }
func (e *badRequestError) GRPCStatus() *status.Status { return e.st }
func (e *badRequestError) Is(target error) bool       { return target == ErrBadRequest }

func badRequest(format string, args ...any) error {
	return &badRequestError{st: status.Newf(codes.InvalidArgument, format, args...)}
}

// Client calls the methods of the server (or servers, behind a balancer)
// on one connection by name. It learns descriptors through server
// reflection on first use and keeps them, so make one Client per
// connection and reuse it. It is safe for concurrent use. It does not own
// the connection: closing it stays the caller's job.
type Client struct {
	cc      grpc.ClientConnInterface
	version atomic.Int32 // the reflection version that works (reflect.go)
	snap    atomic.Pointer[snapshot]
	fetchMu sync.Mutex // one descriptor fetch at a time (reflect.go)

	listMu   sync.Mutex // one listing at a time
	mu       sync.Mutex
	services []string // listed once; nil until then
	methods  map[string]protoreflect.MethodDescriptor
}

// NewClient returns a Client of the server behind cc, e.g. a connection
// from micro's Service.Dial or from grpc.NewClient. Nothing is sent until
// the first lookup or call.
func NewClient(cc grpc.ClientConnInterface) *Client {
	c := &Client{cc: cc, methods: map[string]protoreflect.MethodDescriptor{}}
	c.snap.Store(newSnapshot(new(protoregistry.Files)))
	return c
}

// Services returns the full names of the services the server serves, as
// its reflection service lists them (health and reflection included),
// sorted. The list is asked for once per Client.
func (c *Client) Services(ctx context.Context) ([]string, error) {
	c.mu.Lock()
	names := c.services
	c.mu.Unlock()
	if names != nil {
		return slices.Clone(names), nil
	}
	// Concurrent first lookups share one listing.
	c.listMu.Lock()
	defer c.listMu.Unlock()
	c.mu.Lock()
	names = c.services
	c.mu.Unlock()
	if names != nil {
		return slices.Clone(names), nil
	}
	names, err := c.listServices(ctx)
	if err != nil {
		return nil, wrapReflectionErr(err, "list services")
	}
	if names == nil {
		names = []string{}
	}
	c.mu.Lock()
	c.services = names
	c.mu.Unlock()
	return slices.Clone(names), nil
}

// Service returns the descriptor of a service of the server, named in
// full ("greeter.Greeter") or by its short name ("Greeter") when exactly
// one of the server's services has it.
func (c *Client) Service(ctx context.Context, name string) (protoreflect.ServiceDescriptor, error) {
	full, err := c.serviceName(ctx, name)
	if err != nil {
		return nil, err
	}
	d, err := c.findDescriptor(ctx, full)
	if err != nil {
		return nil, err
	}
	sd, ok := d.(protoreflect.ServiceDescriptor)
	if !ok {
		return nil, status.Errorf(codes.NotFound, "dynamic: %s is not a service", full)
	}
	return sd, nil
}

// serviceName finds the full name of a service named in full or by its
// short name.
func (c *Client) serviceName(ctx context.Context, name string) (string, error) {
	if name == "" {
		return "", badRequest("dynamic: empty service name")
	}
	names, err := c.Services(ctx)
	if err != nil {
		return "", err
	}
	if slices.Contains(names, name) {
		return name, nil
	}
	var found []string
	for _, n := range names {
		if strings.HasSuffix(n, "."+name) {
			found = append(found, n)
		}
	}
	switch len(found) {
	case 1:
		return found[0], nil
	case 0:
		return "", status.Errorf(codes.NotFound, "dynamic: the server has no service %q (it has %s)", name, strings.Join(names, ", "))
	default:
		return "", badRequest("dynamic: %q is ambiguous: the server has %s; name one in full", name, strings.Join(found, ", "))
	}
}

// Method returns the descriptor of a method, named as the package doc
// says ("/greeter.Greeter/Hello", "greeter.Greeter/Hello",
// "greeter.Greeter.Hello", "Greeter.Hello"). Its Input and Output are the
// request and response message types; [FullMethod] gives its path.
func (c *Client) Method(ctx context.Context, name string) (protoreflect.MethodDescriptor, error) {
	c.mu.Lock()
	md, ok := c.methods[name]
	c.mu.Unlock()
	if ok {
		return md, nil
	}
	svc, method, err := splitMethod(name)
	if err != nil {
		return nil, err
	}
	sd, err := c.Service(ctx, svc)
	if err != nil {
		return nil, err
	}
	md = sd.Methods().ByName(protoreflect.Name(method))
	if md == nil {
		var have []string
		for i := range sd.Methods().Len() {
			have = append(have, string(sd.Methods().Get(i).Name()))
		}
		slices.Sort(have)
		return nil, status.Errorf(codes.NotFound, "dynamic: service %s has no method %q (its methods: %s)", sd.FullName(), method, strings.Join(have, ", "))
	}
	c.mu.Lock()
	c.methods[name] = md
	c.mu.Unlock()
	return md, nil
}

// splitMethod splits a method name into the service and the method: at the
// last '/', or, without one, at the last '.'.
func splitMethod(name string) (svc, method string, err error) {
	n := strings.TrimPrefix(name, "/")
	i := strings.LastIndexByte(n, '/')
	if i < 0 {
		i = strings.LastIndexByte(n, '.')
	}
	if i <= 0 || i == len(n)-1 {
		return "", "", badRequest("dynamic: method name %q: want service and method, e.g. greeter.Greeter/Hello or Greeter.Hello", name)
	}
	return n[:i], n[i+1:], nil
}

// FullMethod returns the path gRPC sends for md: "/greeter.Greeter/Hello".
func FullMethod(md protoreflect.MethodDescriptor) string {
	return "/" + string(md.Parent().FullName()) + "/" + string(md.Name())
}

// kind names a method's streaming kind for error messages.
func kind(md protoreflect.MethodDescriptor) string {
	switch {
	case md.IsStreamingClient() && md.IsStreamingServer():
		return "bidirectional streaming"
	case md.IsStreamingClient():
		return "client streaming"
	case md.IsStreamingServer():
		return "server streaming"
	}
	return "unary"
}

// Invoke calls a unary method with req, which must be of the method's
// request type (a dynamicpb message made from the method's Input, or the
// generated type), and returns the response as a dynamic message. opts are
// the call's options (metadata goes in ctx, as with generated code).
func (c *Client) Invoke(ctx context.Context, method string, req proto.Message, opts ...grpc.CallOption) (*dynamicpb.Message, error) {
	md, err := c.unary(ctx, method)
	if err != nil {
		return nil, err
	}
	if err := checkType(md, md.Input(), req); err != nil {
		return nil, err
	}
	rsp := dynamicpb.NewMessage(md.Output())
	if err := c.cc.Invoke(ctx, FullMethod(md), req, rsp, opts...); err != nil {
		return nil, err
	}
	return rsp, nil
}

// InvokeJSON calls a unary method with a request given as JSON and returns
// the response as JSON (compact, one line).
func (c *Client) InvokeJSON(ctx context.Context, method string, req []byte, opts ...grpc.CallOption) ([]byte, error) {
	md, err := c.unary(ctx, method)
	if err != nil {
		return nil, err
	}
	in, err := c.unmarshal(md, req)
	if err != nil {
		return nil, err
	}
	rsp := dynamicpb.NewMessage(md.Output())
	if err := c.cc.Invoke(ctx, FullMethod(md), in, rsp, opts...); err != nil {
		return nil, err
	}
	return c.marshal(md, rsp)
}

func (c *Client) unary(ctx context.Context, method string) (protoreflect.MethodDescriptor, error) {
	md, err := c.Method(ctx, method)
	if err != nil {
		return nil, err
	}
	if md.IsStreamingClient() || md.IsStreamingServer() {
		return nil, badRequest("dynamic: %s is a %s method: call it with NewStream", FullMethod(md), kind(md))
	}
	return md, nil
}

func checkType(md protoreflect.MethodDescriptor, want protoreflect.MessageDescriptor, m proto.Message) error {
	if m == nil {
		return badRequest("dynamic: nil message for %s, want a %s", FullMethod(md), want.FullName())
	}
	if got := m.ProtoReflect().Descriptor().FullName(); got != want.FullName() {
		return badRequest("dynamic: a %s for %s, which takes a %s", got, FullMethod(md), want.FullName())
	}
	return nil
}

// unmarshal parses JSON as the method's request.
func (c *Client) unmarshal(md protoreflect.MethodDescriptor, js []byte) (*dynamicpb.Message, error) {
	m := dynamicpb.NewMessage(md.Input())
	opts := protojson.UnmarshalOptions{Resolver: c.snap.Load().types}
	if err := opts.Unmarshal(js, m); err != nil {
		return nil, badRequest("dynamic: the request for %s is not a valid %s in JSON: %v", FullMethod(md), md.Input().FullName(), err)
	}
	return m, nil
}

// marshal prints m as compact JSON. protojson varies its spacing on
// purpose, so that nobody depends on it; compacting gives output that
// scripts and tests can compare.
func (c *Client) marshal(md protoreflect.MethodDescriptor, m proto.Message) ([]byte, error) {
	js, err := protojson.MarshalOptions{Resolver: c.snap.Load().types}.Marshal(m)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "dynamic: the response of %s as JSON: %v", FullMethod(md), err)
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, js); err != nil {
		return nil, status.Errorf(codes.Internal, "dynamic: the response of %s as JSON: %v", FullMethod(md), err)
	}
	return buf.Bytes(), nil
}

// Stream is a call of a method of any kind: send the requests (one, for a
// unary or server-streaming method), CloseSend, and receive until Recv
// returns io.EOF, as with a generated client stream. One goroutine may
// send while another receives.
type Stream struct {
	c      *Client
	md     protoreflect.MethodDescriptor
	stream grpc.ClientStream
}

// NewStream starts a call of a method of any kind; ctx bounds the whole
// call.
func (c *Client) NewStream(ctx context.Context, method string, opts ...grpc.CallOption) (*Stream, error) {
	md, err := c.Method(ctx, method)
	if err != nil {
		return nil, err
	}
	desc := &grpc.StreamDesc{StreamName: string(md.Name()), ServerStreams: md.IsStreamingServer(), ClientStreams: md.IsStreamingClient()}
	cs, err := c.cc.NewStream(ctx, desc, FullMethod(md), opts...)
	if err != nil {
		return nil, err
	}
	return &Stream{c: c, md: md, stream: cs}, nil
}

// Context returns the stream's context; once Header or Recv returned, it
// carries the peer (the node) that serves the call (peer.FromContext).
func (s *Stream) Context() context.Context { return s.stream.Context() }

// Method returns the descriptor of the stream's method.
func (s *Stream) Method() protoreflect.MethodDescriptor { return s.md }

// Send sends one request, of the method's request type.
func (s *Stream) Send(m proto.Message) error {
	if err := checkType(s.md, s.md.Input(), m); err != nil {
		return err
	}
	return s.stream.SendMsg(m)
}

// SendJSON sends one request given as JSON.
func (s *Stream) SendJSON(js []byte) error {
	m, err := s.c.unmarshal(s.md, js)
	if err != nil {
		return err
	}
	return s.stream.SendMsg(m)
}

// CloseSend says that no more requests follow.
func (s *Stream) CloseSend() error { return s.stream.CloseSend() }

// Recv receives the next response; it returns io.EOF after the last one
// of a call that succeeded, and the call's status error otherwise.
func (s *Stream) Recv() (*dynamicpb.Message, error) {
	m := dynamicpb.NewMessage(s.md.Output())
	if err := s.stream.RecvMsg(m); err != nil {
		return nil, err
	}
	return m, nil
}

// RecvJSON is Recv with the response as compact JSON.
func (s *Stream) RecvJSON() ([]byte, error) {
	m, err := s.Recv()
	if err != nil {
		return nil, err
	}
	return s.c.marshal(s.md, m)
}

// Header returns the server's header metadata, waiting for it.
func (s *Stream) Header() (metadata.MD, error) { return s.stream.Header() }

// Trailer returns the server's trailer metadata once Recv has returned
// an error (io.EOF included).
func (s *Stream) Trailer() metadata.MD { return s.stream.Trailer() }
