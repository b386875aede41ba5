// Package greetertest is the greeter service implementation shared by
// microgrpc's tests, examples and benchmarks. Every response names the node
// that produced it, so tests can see where a call went.
package greetertest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/microgrpc/microgrpc/proto/greeter"
)

// MaxStreamCount bounds Request.Count for HelloStream.
const MaxStreamCount = 10000

// Server implements pb.GreeterServer.
type Server struct {
	pb.UnimplementedGreeterServer
	// Node is reported in every Response.
	Node string
	// Hook, when set, runs at the start of every Hello; a non-nil error is
	// returned to the caller instead of the greeting.
	Hook func(ctx context.Context, req *pb.Request) error
}

// Hello answers "Hello <name>".
func (s *Server) Hello(ctx context.Context, req *pb.Request) (*pb.Response, error) {
	if s.Hook != nil {
		if err := s.Hook(ctx, req); err != nil {
			return nil, err
		}
	}
	return &pb.Response{Msg: "Hello " + req.GetName(), Node: s.Node}, nil
}

// HelloStream sends req.Count greetings, numbered from 1.
func (s *Server) HelloStream(req *pb.Request, stream pb.Greeter_HelloStreamServer) error {
	if req.GetCount() < 0 || req.GetCount() > MaxStreamCount {
		return status.Errorf(codes.InvalidArgument, "count %d out of range [0, %d]", req.GetCount(), MaxStreamCount)
	}
	for i := range req.GetCount() {
		msg := fmt.Sprintf("Hello %s #%d", req.GetName(), i+1)
		if err := stream.Send(&pb.Response{Msg: msg, Node: s.Node}); err != nil {
			return err
		}
	}
	return nil
}

// HelloMany greets every name received, in one response.
func (s *Server) HelloMany(stream pb.Greeter_HelloManyServer) error {
	var names []string
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return stream.SendAndClose(&pb.Response{Msg: "Hello " + strings.Join(names, ", "), Node: s.Node})
		}
		if err != nil {
			return err
		}
		names = append(names, req.GetName())
	}
}

// Chat answers each request as it arrives.
func (s *Server) Chat(stream pb.Greeter_ChatServer) error {
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := stream.Send(&pb.Response{Msg: "Hello " + req.GetName(), Node: s.Node}); err != nil {
			return err
		}
	}
}
