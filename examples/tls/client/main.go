// Command client calls the TLS example's greeter with its own certificate
// and prints the answer, which names the caller as the server saw it.
//
//	go run ./examples/tls/client --tls_cert_file=/tmp/microgrpc-tls/client.crt \
//	    --tls_key_file=/tmp/microgrpc-tls/client.key --tls_ca_file=/tmp/microgrpc-tls/ca.crt
package main

import (
	"context"
	"fmt"
	"log"
	"time"

	"google.golang.org/grpc"

	"github.com/microgrpc/microgrpc/micro"
	_ "github.com/microgrpc/microgrpc/plugins/all" // --registry=etcd, --broker=nats, ... by flag
	pb "github.com/microgrpc/microgrpc/proto/greeter"
)

func main() {
	service := micro.NewService(micro.WithName("greeter.client"))
	if err := service.Init(); err != nil {
		log.Fatal(err)
	}
	defer service.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rsp, err := pb.NewGreeterClient(service.Dial("greeter")).Hello(ctx, &pb.Request{Name: "John"}, grpc.WaitForReady(true))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(rsp.GetMsg())
}
