package gateway_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/microgrpc/microgrpc/internal/greetertest"
	"github.com/microgrpc/microgrpc/micro"
	"github.com/microgrpc/microgrpc/micro/gateway"
	pb "github.com/microgrpc/microgrpc/proto/greeter"
	"github.com/microgrpc/microgrpc/resolver/memory"
)

// A gateway to the services of a registry, mounted in a program's own
// HTTP server, answers a POST of JSON with the service's answer.
func ExampleNew() {
	quiet := slog.New(slog.DiscardHandler)
	reg := memory.NewRegistry()

	// A greeter node (in a real deployment, its own process).
	ctx, stop := context.WithCancel(context.Background())
	started := make(chan struct{})
	node := micro.NewService(micro.WithName("greeter"), micro.WithID("n1"), micro.WithAddress("127.0.0.1:0"), micro.WithRegistry(reg),
		micro.WithContext(ctx), micro.WithSignal(false), micro.WithDeregisterWait(0), micro.WithLogger(quiet),
		micro.WithAfterStart(func(context.Context) error { close(started); return nil }))
	pb.RegisterGreeterServer(node.Server(), &greetertest.Server{Node: "n1"})
	done := make(chan error, 1)
	go func() { done <- node.Run() }()
	<-started
	defer func() { stop(); <-done }()

	// The gateway: a client-only service, and its handler.
	svc := micro.NewService(micro.WithName("gateway"), micro.WithRegistry(reg), micro.WithLogger(quiet))
	defer svc.Close()
	gw, err := gateway.New(svc, gateway.WithLogger(quiet))
	if err != nil {
		log.Fatal(err)
	}
	defer gw.Close()
	mux := http.NewServeMux()
	mux.Handle("/", gw)
	srv := httptest.NewServer(mux)
	defer srv.Close()

	rctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(rctx, http.MethodPost, srv.URL+"/api/greeter/Greeter.Hello", strings.NewReader(`{"name":"John"}`))
	rsp, err := http.DefaultClient.Do(req)
	if err != nil {
		log.Fatal(err)
	}
	defer rsp.Body.Close()
	var answer struct{ Msg, Node string }
	if err := json.NewDecoder(rsp.Body).Decode(&answer); err != nil {
		log.Fatal(err)
	}
	fmt.Println(rsp.Status, answer.Msg, "from", rsp.Header.Get(gateway.NodeHeader))
	// Output: 200 OK Hello John from n1
}
