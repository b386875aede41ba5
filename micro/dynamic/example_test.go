package dynamic_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/reflection"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/dynamicpb"

	"github.com/microgrpc/microgrpc/micro/dynamic"
	pb "github.com/microgrpc/microgrpc/proto/greeter"
)

// greeter is a plain implementation of the example service.
type greeter struct{ pb.UnimplementedGreeterServer }

func (greeter) Hello(_ context.Context, req *pb.Request) (*pb.Response, error) {
	return &pb.Response{Msg: "Hello " + req.GetName()}, nil
}

func (greeter) HelloStream(req *pb.Request, stream pb.Greeter_HelloStreamServer) error {
	for i := range req.GetCount() {
		if err := stream.Send(&pb.Response{Msg: fmt.Sprintf("Hello %s #%d", req.GetName(), i+1)}); err != nil {
			return err
		}
	}
	return nil
}

// serve starts a gRPC server with reflection on 127.0.0.1 and returns a
// connection to it and a function that stops both.
func serve() (*grpc.ClientConn, func(), error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, nil, err
	}
	srv := grpc.NewServer()
	pb.RegisterGreeterServer(srv, greeter{})
	reflection.Register(srv) // what dynamic learns the types from; micro services have it
	go srv.Serve(lis)
	cc, err := grpc.NewClient("passthrough:///"+lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		srv.Stop()
		return nil, nil, err
	}
	return cc, func() { cc.Close(); srv.Stop() }, nil
}

// A unary call with JSON in and out, the method named go-micro's way. With
// micro, the connection would be svc.Dial("greeter").
func Example() {
	cc, stop, err := serve()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer stop()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	greeter := dynamic.NewClient(cc)
	rsp, err := greeter.InvokeJSON(ctx, "Greeter.Hello", []byte(`{"name":"John"}`))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(string(rsp))
	// Output: {"msg":"Hello John"}
}

// Dynamic messages: the request is built from the method's descriptor,
// learned by reflection, and fields are set by name.
func ExampleClient_Invoke() {
	cc, stop, err := serve()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer stop()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	greeter := dynamic.NewClient(cc)
	md, err := greeter.Method(ctx, "greeter.Greeter/Hello")
	if err != nil {
		fmt.Println(err)
		return
	}
	req := dynamicpb.NewMessage(md.Input())
	req.Set(md.Input().Fields().ByName("name"), protoreflect.ValueOfString("Jane"))
	rsp, err := greeter.Invoke(ctx, "greeter.Greeter/Hello", req)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(md.Input().FullName(), "->", md.Output().FullName()+":", rsp.Get(md.Output().Fields().ByName("msg")).String())
	// Output: greeter.Request -> greeter.Response: Hello Jane
}

// A server-streaming call: one request, then responses until io.EOF.
func ExampleClient_NewStream() {
	cc, stop, err := serve()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer stop()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	stream, err := dynamic.NewClient(cc).NewStream(ctx, "/greeter.Greeter/HelloStream")
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := stream.SendJSON([]byte(`{"name":"John","count":2}`)); err != nil {
		fmt.Println(err)
		return
	}
	stream.CloseSend()
	for {
		rsp, err := stream.RecvJSON()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Println(string(rsp))
	}
	// Output:
	// {"msg":"Hello John #1"}
	// {"msg":"Hello John #2"}
}
