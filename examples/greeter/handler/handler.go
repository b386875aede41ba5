// Package handler is the greeter example's handler, shared by its server
// and its one-command demo.
package handler

import (
	"context"

	pb "github.com/microgrpc/microgrpc/proto/greeter"
)

// Greeter answers Hello, as go-micro's README greeter does.
type Greeter struct {
	pb.UnimplementedGreeterServer
}

// Hello greets req.Name.
func (g *Greeter) Hello(ctx context.Context, req *pb.Request) (*pb.Response, error) {
	return &pb.Response{Msg: "Hello " + req.GetName()}, nil
}
