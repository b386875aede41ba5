// Command client calls the greeter found through the file registry plugin:
//
//	go run ./examples/plugins/client --registry=file --registry_address=/tmp/reg
package main

import (
	"context"
	"fmt"
	"log"
	"time"

	"google.golang.org/grpc"

	_ "github.com/microgrpc/microgrpc/examples/plugins/fileregistry"
	"github.com/microgrpc/microgrpc/micro"
	_ "github.com/microgrpc/microgrpc/plugins/all" // --registry=etcd, --broker=nats, ... by flag
	pb "github.com/microgrpc/microgrpc/proto/greeter"
)

func main() {
	svc := micro.NewService(micro.WithName("greeter.client"))
	if err := svc.Init(); err != nil {
		log.Fatal(err)
	}
	defer svc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rsp, err := pb.NewGreeterClient(svc.Dial("greeter")).Hello(ctx, &pb.Request{Name: "John"}, grpc.WaitForReady(true))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(rsp.GetMsg())
}
