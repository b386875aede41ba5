package controlplane_test

import (
	"context"
	"fmt"
	"log"
	"net"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/xds"

	"github.com/microgrpc/microgrpc/internal/greetertest"
	"github.com/microgrpc/microgrpc/micro/controlplane"
	pb "github.com/microgrpc/microgrpc/proto/greeter"
	"github.com/microgrpc/microgrpc/resolver"
	"github.com/microgrpc/microgrpc/resolver/memory"
)

// A control plane of a registry, and a plain grpc-go client that finds the
// greeter through it by dialling xds:///greeter.
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// A greeter node, registered.
	reg := memory.NewRegistry()
	lis, _ := net.Listen("tcp", "127.0.0.1:0")
	gs := grpc.NewServer()
	pb.RegisterGreeterServer(gs, &greetertest.Server{Node: "node-1"})
	go gs.Serve(lis)
	defer gs.Stop()
	reg.Register(ctx, &resolver.Service{Name: "greeter", Nodes: []resolver.Node{{ID: "node-1", Address: lis.Addr().String()}}})

	// The control plane.
	cp, err := controlplane.New(reg)
	if err != nil {
		log.Fatal(err)
	}
	defer cp.Close()
	cpLis, _ := net.Listen("tcp", "127.0.0.1:0")
	go cp.Serve(cpLis)

	// The client: a bootstrap naming the control plane (usually the file
	// in GRPC_XDS_BOOTSTRAP, with a blank import of grpc/xds).
	bootstrap, _ := controlplane.Bootstrap(controlplane.BootstrapConfig{ServerURI: cpLis.Addr().String()})
	xdsResolver, err := xds.NewXDSResolverWithConfigForTesting(bootstrap)
	if err != nil {
		log.Fatal(err)
	}
	conn, err := grpc.NewClient("xds:///greeter", grpc.WithResolvers(xdsResolver), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	rsp, err := pb.NewGreeterClient(conn).Hello(ctx, &pb.Request{Name: "xDS"})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(rsp.GetMsg(), "from", rsp.GetNode())
	// Output: Hello xDS from node-1
}

// The bootstrap file of a client of the control plane at 127.0.0.1:18000.
func ExampleBootstrap() {
	b, err := controlplane.Bootstrap(controlplane.BootstrapConfig{ServerURI: "127.0.0.1:18000"})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(string(b))
	// Output:
	// {
	//   "node": {
	//     "id": "microgrpc-xds-client",
	//     "locality": {}
	//   },
	//   "xds_servers": [
	//     {
	//       "channel_creds": [
	//         {
	//           "type": "insecure"
	//         }
	//       ],
	//       "server_features": [
	//         "xds_v3",
	//         "ignore_resource_deletion"
	//       ],
	//       "server_uri": "127.0.0.1:18000"
	//     }
	//   ]
	// }
}
