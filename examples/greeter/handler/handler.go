// Package handler is the greeter example's handler, shared by its server,
// its one-command demo and the streaming example.
package handler

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/microgrpc/microgrpc/proto/greeter"
)

// MaxCount bounds HelloStream's count.
const MaxCount = 10000

// Greeter answers Hello, as go-micro's README greeter does, and the three
// kinds of streaming call.
type Greeter struct {
	pb.UnimplementedGreeterServer
	// Node is reported in every Response (the node's id), so a client sees
	// which node answered.
	Node string
	// Interval spaces HelloStream's greetings, to make a stream last.
	Interval time.Duration
}

// Hello greets req.Name.
func (g *Greeter) Hello(ctx context.Context, req *pb.Request) (*pb.Response, error) {
	return &pb.Response{Msg: "Hello " + req.GetName(), Node: g.Node}, nil
}

// HelloStream sends req.Count numbered greetings (server streaming), one
// every Interval; it stops early when the caller goes away.
func (g *Greeter) HelloStream(req *pb.Request, stream pb.Greeter_HelloStreamServer) error {
	if req.GetCount() < 0 || req.GetCount() > MaxCount {
		return status.Errorf(codes.InvalidArgument, "count %d out of range [0, %d]", req.GetCount(), MaxCount)
	}
	var tick <-chan time.Time
	if g.Interval > 0 {
		t := time.NewTicker(g.Interval)
		defer t.Stop()
		tick = t.C
	}
	for i := range req.GetCount() {
		if tick != nil && i > 0 {
			select {
			case <-tick:
			case <-stream.Context().Done():
				return status.FromContextError(stream.Context().Err()).Err()
			}
		}
		msg := fmt.Sprintf("Hello %s #%d", req.GetName(), i+1)
		if err := stream.Send(&pb.Response{Msg: msg, Node: g.Node}); err != nil {
			return err
		}
	}
	return nil
}

// HelloMany greets every name the caller sends, in one answer (client
// streaming).
func (g *Greeter) HelloMany(stream pb.Greeter_HelloManyServer) error {
	var names []string
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return stream.SendAndClose(&pb.Response{Msg: "Hello " + strings.Join(names, ", "), Node: g.Node})
		}
		if err != nil {
			return err
		}
		names = append(names, req.GetName())
	}
}

// Chat greets each name as it arrives (bidirectional streaming).
func (g *Greeter) Chat(stream pb.Greeter_ChatServer) error {
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := stream.Send(&pb.Response{Msg: "Hello " + req.GetName(), Node: g.Node}); err != nil {
			return err
		}
	}
}
