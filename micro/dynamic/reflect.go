package dynamic

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	refpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"
)

// The reflection methods. v1alpha's messages are v1's under another
// package name, field for field (grpc-go's own server converts one into the
// other by copying fields), so both are spoken with v1's message types:
// this keeps the deprecated v1alpha package out of the build.
const (
	reflectionV1      = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"
	reflectionV1Alpha = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"
)

// The reflection versions a Client has found to work (Client.version).
const (
	versionUnknown int32 = iota
	versionV1
	versionV1Alpha
)

var reflectionDesc = &grpc.StreamDesc{StreamName: "ServerReflectionInfo", ServerStreams: true, ClientStreams: true}

// errNoReflection marks a server that serves neither reflection version.
var errNoReflection = errors.New("no reflection")

// snapshot is an immutable view of the descriptors learned so far. A new
// one replaces it whenever files are added, so that lookups, which may run
// concurrently with a fetch, never see a registry being written.
type snapshot struct {
	files *protoregistry.Files
	types *dynamicpb.Types
}

func newSnapshot(files *protoregistry.Files) *snapshot {
	return &snapshot{files: files, types: dynamicpb.NewTypes(files)}
}

// reflStream is one reflection stream: requests answered in order.
type reflStream struct {
	stream grpc.ClientStream
}

// ask sends req and returns the answer. A stream that failed to open shows
// its error here, at the first Recv.
func (s *reflStream) ask(req *refpb.ServerReflectionRequest) (*refpb.ServerReflectionResponse, error) {
	if err := s.stream.SendMsg(req); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	// An io.EOF from SendMsg means the stream ended; RecvMsg says why.
	rsp := new(refpb.ServerReflectionResponse)
	if err := s.stream.RecvMsg(rsp); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, status.Error(codes.Internal, "the server closed the reflection stream without answering")
		}
		return nil, err
	}
	if e := rsp.GetErrorResponse(); e != nil {
		return nil, answered{status.New(codes.Code(e.GetErrorCode()), e.GetErrorMessage())}
	}
	return rsp, nil
}

// reflect runs fn on a reflection stream: v1, or v1alpha when the server
// does not serve v1. The version that worked is remembered. A server that
// serves neither gives an Unimplemented error wrapping errNoReflection.
func (c *Client) reflect(ctx context.Context, fn func(*reflStream) error) error {
	versions := []int32{versionV1, versionV1Alpha}
	if v := c.version.Load(); v != versionUnknown {
		versions = []int32{v}
	}
	var errs []string
	for _, v := range versions {
		method := reflectionV1
		if v == versionV1Alpha {
			method = reflectionV1Alpha
		}
		err := c.reflectWith(ctx, method, fn)
		if status.Code(err) == codes.Unimplemented && !isAnswer(err) {
			// One reason is enough: the other version's says the same.
			errs = append(errs, status.Convert(err).Message())
			continue
		}
		if err == nil {
			c.version.Store(v)
		}
		return err
	}
	return &noReflectionError{status: status.New(codes.Unimplemented,
		"dynamic: the server does not serve gRPC reflection (neither grpc.reflection.v1 nor v1alpha; "+errs[0]+
			"), which is how method types are learned: register it on the server (reflection.Register)")}
}

// answered is the status of an ErrorResponse: the reflection service
// answered, as opposed to the call failing. An Unimplemented answer (a
// symbol kind the server does not support) must not be taken for a server
// without reflection.
type answered struct{ st *status.Status }

func (a answered) Error() string              { return a.st.Message() }
func (a answered) GRPCStatus() *status.Status { return a.st }

func isAnswer(err error) bool {
	var a answered
	return errors.As(err, &a)
}

// noReflectionError is an Unimplemented status error that also is
// errNoReflection, so that callers wrapping errors can leave it as it is.
type noReflectionError struct{ status *status.Status }

func (e *noReflectionError) Error() string              { return e.GRPCStatus().Err().Error() }
func (e *noReflectionError) GRPCStatus() *status.Status { return e.status }
func (e *noReflectionError) Is(target error) bool       { return target == errNoReflection }

func (c *Client) reflectWith(ctx context.Context, method string, fn func(*reflStream) error) error {
	ctx, cancel := context.WithCancel(ctx)
	// Cancelling ends the stream on both sides whatever fn did; grpc-go
	// requires it of a stream that is not read to its end.
	defer cancel()
	st, err := c.cc.NewStream(ctx, reflectionDesc, method)
	if err != nil {
		return err
	}
	s := &reflStream{stream: st}
	err = fn(s)
	_ = st.CloseSend()
	return err
}

// listServices asks for the names of the server's services.
func (c *Client) listServices(ctx context.Context) ([]string, error) {
	var names []string
	err := c.reflect(ctx, func(s *reflStream) error {
		rsp, err := s.ask(&refpb.ServerReflectionRequest{MessageRequest: &refpb.ServerReflectionRequest_ListServices{}})
		if err != nil {
			return err
		}
		for _, svc := range rsp.GetListServicesResponse().GetService() {
			names = append(names, svc.GetName())
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	slices.Sort(names)
	return slices.Compact(names), nil
}

// findDescriptor returns the descriptor of a fully-qualified symbol,
// fetching the file that defines it (and the files it imports) from the
// server when it is not known yet.
func (c *Client) findDescriptor(ctx context.Context, symbol string) (protoreflect.Descriptor, error) {
	if d, err := c.snap.Load().files.FindDescriptorByName(protoreflect.FullName(symbol)); err == nil {
		return d, nil
	}
	// One fetch at a time: concurrent lookups of one symbol then cost one
	// round trip, and snapshots are replaced in order.
	c.fetchMu.Lock()
	defer c.fetchMu.Unlock()
	snap := c.snap.Load()
	if d, err := snap.files.FindDescriptorByName(protoreflect.FullName(symbol)); err == nil {
		return d, nil
	}
	fetched := map[string]*descriptorpb.FileDescriptorProto{}
	var order []string // the files as received, so that errors are stable
	add := func(rsp *refpb.ServerReflectionResponse) error {
		for _, raw := range rsp.GetFileDescriptorResponse().GetFileDescriptorProto() {
			fd := new(descriptorpb.FileDescriptorProto)
			if err := proto.Unmarshal(raw, fd); err != nil {
				return status.Errorf(codes.Internal, "dynamic: the server sent a file descriptor that does not decode: %v", err)
			}
			if _, dup := fetched[fd.GetName()]; !dup {
				order = append(order, fd.GetName())
			}
			fetched[fd.GetName()] = fd
		}
		return nil
	}
	err := c.reflect(ctx, func(s *reflStream) error {
		rsp, err := s.ask(&refpb.ServerReflectionRequest{MessageRequest: &refpb.ServerReflectionRequest_FileContainingSymbol{FileContainingSymbol: symbol}})
		if err != nil {
			return err
		}
		if err := add(rsp); err != nil {
			return err
		}
		// The server sends the imports it has not sent on this stream
		// yet; ask for any that is still missing.
		for i := 0; i < len(order); i++ {
			for _, dep := range fetched[order[i]].GetDependency() {
				if _, ok := fetched[dep]; ok {
					continue
				}
				if _, err := snap.files.FindFileByPath(dep); err == nil {
					continue
				}
				rsp, err := s.ask(&refpb.ServerReflectionRequest{MessageRequest: &refpb.ServerReflectionRequest_FileByFilename{FileByFilename: dep}})
				if err != nil {
					if _, gerr := protoregistry.GlobalFiles.FindFileByPath(dep); gerr == nil && isAnswer(err) {
						continue // e.g. a well-known type this program links too
					}
					return fmt.Errorf("%w (file %q, imported by %q)", err, dep, order[i])
				}
				if err := add(rsp); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		if isAnswer(err) && status.Code(err) == codes.NotFound {
			return nil, status.Errorf(codes.NotFound, "dynamic: the server does not know %s: %s", symbol, status.Convert(err).Message())
		}
		return nil, wrapReflectionErr(err, "look up "+symbol)
	}
	files, err := merge(snap.files, fetched, order)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "dynamic: descriptors of %s from the server: %v", symbol, err)
	}
	c.snap.Store(newSnapshot(files))
	d, err := files.FindDescriptorByName(protoreflect.FullName(symbol))
	if err != nil {
		return nil, status.Errorf(codes.NotFound, "dynamic: the server's descriptors do not define %s", symbol)
	}
	return d, nil
}

// wrapReflectionErr keeps err's code and says what was being done.
func wrapReflectionErr(err error, doing string) error {
	if errors.Is(err, errNoReflection) {
		return err
	}
	st := status.Convert(err)
	return status.Errorf(st.Code(), "dynamic: reflection: %s: %s", doing, st.Message())
}

// merge returns a copy of have with the fetched files added, each after
// the files it imports.
func merge(have *protoregistry.Files, fetched map[string]*descriptorpb.FileDescriptorProto, order []string) (*protoregistry.Files, error) {
	files := new(protoregistry.Files)
	var err error
	have.RangeFiles(func(fd protoreflect.FileDescriptor) bool {
		err = files.RegisterFile(fd)
		return err == nil
	})
	if err != nil {
		return nil, err
	}
	visiting := map[string]bool{}
	var build func(name string) error
	build = func(name string) error {
		if _, err := files.FindFileByPath(name); err == nil {
			return nil
		}
		fdp, ok := fetched[name]
		if !ok {
			if fd, err := protoregistry.GlobalFiles.FindFileByPath(name); err == nil {
				return files.RegisterFile(fd)
			}
			return fmt.Errorf("file %q is missing", name)
		}
		if visiting[name] {
			return fmt.Errorf("import cycle through %q", name)
		}
		visiting[name] = true
		for _, dep := range fdp.GetDependency() {
			if err := build(dep); err != nil {
				return err
			}
		}
		fd, err := protodesc.NewFile(fdp, files)
		if err != nil {
			return err
		}
		return files.RegisterFile(fd)
	}
	for _, name := range order {
		if err := build(name); err != nil {
			return nil, err
		}
	}
	return files, nil
}
