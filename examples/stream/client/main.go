// Command client makes the three kinds of streaming call to the greeter
// service through svc.Dial, so each stream is opened on a ready node found
// through the registry:
//
//   - server streaming: HelloStream sends -count greetings;
//   - client streaming: HelloMany greets every name of -names at once;
//   - bidirectional: Chat greets each name of -names as it is sent.
//
// Run it next to the greeter server:
//
//	go run ./examples/greeter/server &
//	go run ./examples/stream/client -count 5 -names Ann,Bob
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"strings"
	"time"

	"google.golang.org/grpc"

	"github.com/microgrpc/microgrpc/micro"
	_ "github.com/microgrpc/microgrpc/plugins/all" // --registry=etcd, --broker=nats, ... by flag
	pb "github.com/microgrpc/microgrpc/proto/greeter"
)

func main() {
	count := flag.Int("count", 5, "greetings HelloStream sends")
	names := flag.String("names", "Ann,Bob,Cid", "comma-separated names for HelloMany and Chat")
	only := flag.String("only", "", "run only this call: stream, many or chat")
	timeout := flag.Duration("timeout", 30*time.Second, "deadline of each call")
	micro.DefineFlags(flag.CommandLine)
	flag.Parse()

	svc := micro.NewService(micro.WithName("greeter.stream.client"))
	if err := svc.Init(); err != nil {
		log.Fatal(err)
	}
	defer svc.Close()
	greeter := pb.NewGreeterClient(svc.Dial("greeter"))
	list := strings.Split(*names, ",")
	calls := map[string]func(context.Context) error{
		"stream": func(ctx context.Context) error { return helloStream(ctx, greeter, *count) },
		"many":   func(ctx context.Context) error { return helloMany(ctx, greeter, list) },
		"chat":   func(ctx context.Context) error { return chat(ctx, greeter, list) },
	}
	for _, name := range []string{"stream", "many", "chat"} {
		if *only != "" && *only != name {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), *timeout)
		err := calls[name](ctx)
		cancel()
		if err != nil {
			log.Fatalf("%s: %v", name, err)
		}
	}
}

// helloStream prints each greeting of a server stream as it arrives.
func helloStream(ctx context.Context, c pb.GreeterClient, count int) error {
	// WaitForReady: the server may still be starting or being discovered.
	stream, err := c.HelloStream(ctx, &pb.Request{Name: "John", Count: int32(count)}, grpc.WaitForReady(true))
	if err != nil {
		return err
	}
	n := 0
	for {
		rsp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			fmt.Printf("stream: %d greetings\n", n)
			return nil
		}
		if err != nil {
			return fmt.Errorf("after %d greetings: %w", n, err)
		}
		n++
		fmt.Printf("stream: %s (node %s)\n", rsp.GetMsg(), rsp.GetNode())
	}
}

// helloMany sends every name, then prints the one answer.
func helloMany(ctx context.Context, c pb.GreeterClient, names []string) error {
	stream, err := c.HelloMany(ctx, grpc.WaitForReady(true))
	if err != nil {
		return err
	}
	for _, name := range names {
		if err := stream.Send(&pb.Request{Name: name}); err != nil {
			return err
		}
	}
	rsp, err := stream.CloseAndRecv()
	if err != nil {
		return err
	}
	fmt.Printf("many: %s\n", rsp.GetMsg())
	return nil
}

// chat sends the names one by one and prints each answer as it comes.
func chat(ctx context.Context, c pb.GreeterClient, names []string) error {
	stream, err := c.Chat(ctx, grpc.WaitForReady(true))
	if err != nil {
		return err
	}
	for _, name := range names {
		if err := stream.Send(&pb.Request{Name: name}); err != nil {
			return err
		}
		rsp, err := stream.Recv()
		if err != nil {
			return err
		}
		fmt.Printf("chat: %s\n", rsp.GetMsg())
	}
	if err := stream.CloseSend(); err != nil {
		return err
	}
	if _, err := stream.Recv(); !errors.Is(err, io.EOF) {
		return fmt.Errorf("chat did not end cleanly: %v", err)
	}
	return nil
}
