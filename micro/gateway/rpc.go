package gateway

import (
	"net/http"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func (g *Gateway) serveRPC(w http.ResponseWriter, r *http.Request) {
	writeError(w, status.Errorf(codes.NotFound, "gateway: no route %s", r.URL.Path), 0)
}

func (g *Gateway) forward(_ any, _ grpc.ServerStream) error {
	return status.Error(codes.Unimplemented, "gateway: not yet")
}
