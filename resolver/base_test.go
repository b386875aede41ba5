package resolver_test

import (
	"net"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/balancer"
	"google.golang.org/grpc/balancer/base"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/microgrpc/microgrpc/internal/greetertest"
	pb "github.com/microgrpc/microgrpc/proto/greeter"
	"github.com/microgrpc/microgrpc/resolver"
	"github.com/microgrpc/microgrpc/resolver/memory"
)

// legacyPicker is a balancer/base picker: it sees only the Addresses form
// of the resolver's state, and the node info in BalancerAttributes.
type legacyPicker struct{ scs []balancer.SubConn }

func (p *legacyPicker) Pick(balancer.PickInfo) (balancer.PickResult, error) {
	return balancer.PickResult{SubConn: p.scs[0]}, nil
}

var legacyNodes = make(chan string, 16)

type legacyBuilder struct{}

func (legacyBuilder) Build(info base.PickerBuildInfo) balancer.Picker {
	if len(info.ReadySCs) == 0 {
		return base.NewErrPicker(balancer.ErrNoSubConnAvailable)
	}
	p := &legacyPicker{}
	for sc, sci := range info.ReadySCs {
		p.scs = append(p.scs, sc)
		if n := resolver.NodeFromAddress(sci.Address); n != nil {
			select {
			case legacyNodes <- n.ID:
			default:
			}
		}
	}
	return p
}

func init() {
	balancer.Register(base.NewBalancerBuilder("test_legacy_base", legacyBuilder{}, base.Config{}))
}

// The resolver fills Addresses too, so a balancer built on balancer/base
// works and can read the node.
func TestBaseBalancerSeesAddressesAndNodes(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	pb.RegisterGreeterServer(srv, &greetertest.Server{Node: "n1"})
	go srv.Serve(lis)
	defer srv.Stop()
	reg := memory.NewRegistry()
	reg.Register(ctx(t), &resolver.Service{Name: "greeter", Nodes: []resolver.Node{{ID: "n1", Address: lis.Addr().String()}}})
	cc, err := grpc.NewClient("memory:///greeter", grpc.WithResolvers(resolver.NewBuilder(reg)),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"test_legacy_base":{}}]}`))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	rsp, err := pb.NewGreeterClient(cc).Hello(ctx(t), &pb.Request{}, grpc.WaitForReady(true))
	if err != nil || rsp.GetNode() != "n1" {
		t.Fatalf("call through a base balancer: %v %v", rsp, err)
	}
	select {
	case id := <-legacyNodes:
		if id != "n1" {
			t.Fatalf("node %q", id)
		}
	default:
		t.Fatal("the base picker saw no node info on the address")
	}
}
