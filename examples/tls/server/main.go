// Command server is the greeter over mutual TLS: it serves only callers
// with a certificate signed by the CA, and lets only
// spiffe://example.org/client call Hello.
//
//	go run ./examples/tls/gencerts -dir /tmp/microgrpc-tls
//	go run ./examples/tls/server --tls_cert_file=/tmp/microgrpc-tls/greeter.crt \
//	    --tls_key_file=/tmp/microgrpc-tls/greeter.key --tls_ca_file=/tmp/microgrpc-tls/ca.crt
package main

import (
	"context"
	"log"

	"github.com/microgrpc/microgrpc/interceptors/auth"
	"github.com/microgrpc/microgrpc/micro"
	_ "github.com/microgrpc/microgrpc/plugins/all" // --registry=etcd, --broker=nats, ... by flag
	pb "github.com/microgrpc/microgrpc/proto/greeter"
)

type greeter struct{ pb.UnimplementedGreeterServer }

// Hello greets the caller by its certificate identity.
func (greeter) Hello(ctx context.Context, req *pb.Request) (*pb.Response, error) {
	id, _ := auth.PeerIdentity(ctx)
	return &pb.Response{Msg: "Hello " + req.GetName() + " (" + id + ")"}, nil
}

func main() {
	rules := auth.Allow{"/greeter.Greeter/Hello": {"spiffe://example.org/client"}}
	service := micro.NewService(micro.WithName("greeter"),
		micro.WithUnaryServerInterceptors(auth.UnaryIdentityInterceptor(rules)),
		micro.WithStreamServerInterceptors(auth.StreamIdentityInterceptor(rules)))
	if err := service.Init(); err != nil { // --tls_cert_file, --tls_key_file, --tls_ca_file
		log.Fatal(err)
	}
	pb.RegisterGreeterServer(service.Server(), greeter{})
	if err := service.Run(); err != nil {
		log.Fatal(err)
	}
}
