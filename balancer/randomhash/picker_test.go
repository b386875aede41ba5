package randomhash

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/balancer"
	"google.golang.org/grpc/balancer/endpointsharding"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
	grpcresolver "google.golang.org/grpc/resolver"

	"github.com/microgrpc/microgrpc/resolver"
)

type fixedPicker struct{ res balancer.PickResult }

func (p fixedPicker) Pick(balancer.PickInfo) (balancer.PickResult, error) { return p.res, nil }

func testPicker(n int) *picker {
	b := &rhBalancer{outliers: map[string]*outlier{}}
	b.cfg.Store(mustDefaultConfig())
	var states []endpointsharding.ChildState
	for i := range n {
		id := fmt.Sprint("node-", i)
		ep := resolver.SetNodeInfo(grpcresolver.Endpoint{Addresses: []grpcresolver.Address{{Addr: id}}},
			&resolver.NodeInfo{ID: id, Service: "svc", Version: "v1"})
		states = append(states, endpointsharding.ChildState{Endpoint: ep,
			State: balancer.State{ConnectivityState: connectivity.Ready, Picker: fixedPicker{}}})
	}
	return b.newPicker(states)
}

// BenchmarkPick measures one pick with 3 and 300 READY endpoints, without
// call state (plain grpc-go, no interceptor), with the interceptor's state,
// and in hash mode. Steady state must allocate nothing.
func BenchmarkPick(b *testing.B) {
	for _, n := range []int{3, 300} {
		p := testPicker(n)
		modes := []struct {
			name string
			ctx  func() context.Context
		}{
			{"random", func() context.Context { return context.Background() }},
			{"random-callstate", func() context.Context { return context.WithValue(context.Background(), callStateKey{}, &callState{}) }},
			{"hash", func() context.Context {
				return context.WithValue(context.Background(), callStateKey{}, &callState{key: "user-42", hasKey: true, tried: make([]string, 0, 1)})
			}},
		}
		for _, m := range modes {
			b.Run(fmt.Sprintf("%s/%d", m.name, n), func(b *testing.B) {
				ctx := m.ctx()
				cs := callStateFrom(ctx)
				info := balancer.PickInfo{Ctx: ctx}
				b.ReportAllocs()
				for b.Loop() {
					if cs != nil {
						cs.tried = cs.tried[:0] // a new call on the same state
					}
					res, err := p.Pick(info)
					if err != nil {
						b.Fatal(err)
					}
					res.Done(balancer.DoneInfo{})
				}
			})
		}
	}
}

func TestPickAllocatesNothing(t *testing.T) {
	p := testPicker(300)
	cs := &callState{key: "k", hasKey: true, tried: make([]string, 0, 1)}
	node := &callState{node: "node-7", tried: make([]string, 0, 1)}
	for name, ctx := range map[string]context.Context{
		"plain": context.Background(),
		"hash":  context.WithValue(context.Background(), callStateKey{}, cs),
		"node":  context.WithValue(context.Background(), callStateKey{}, node),
	} {
		info := balancer.PickInfo{Ctx: ctx}
		allocs := testing.AllocsPerRun(1000, func() {
			cs.tried = cs.tried[:0]
			node.tried = node.tried[:0]
			res, err := p.Pick(info)
			if err != nil {
				t.Fatal(err)
			}
			res.Done(balancer.DoneInfo{}) // gives the pick's Done back to its pool
		})
		if allocs != 0 {
			t.Errorf("%s pick allocates %.1f times", name, allocs)
		}
	}
}

// FilterNode picks exactly the named node, by node id, whatever else is
// ready; the filter applies to endpoints without node information too
// (their id is their address).
func TestFilterNodePicksThatNode(t *testing.T) {
	p := testPicker(5)
	cs := &callState{node: "node-3"}
	info := balancer.PickInfo{Ctx: context.WithValue(context.Background(), callStateKey{}, cs)}
	for range 50 {
		cs.tried = cs.tried[:0]
		if _, err := p.Pick(info); err != nil {
			t.Fatal(err)
		}
		if cs.tried[0] != "node-3" {
			t.Fatalf("picked %s, want node-3", cs.tried[0])
		}
	}
	if !matches(&child{id: "10.0.0.1:80"}, &callState{node: "10.0.0.1:80"}) || matches(&child{id: "10.0.0.2:80"}, &callState{node: "10.0.0.1:80"}) {
		t.Fatal("the node filter does not match endpoints without node information by address")
	}
	cs = &callState{node: "node-9"}
	_, err := p.Pick(balancer.PickInfo{Ctx: context.WithValue(context.Background(), callStateKey{}, cs)})
	if err == nil || !strings.Contains(err.Error(), "node=node-9") {
		t.Fatalf("pick of an unknown node: %v, want an error naming the filter", err)
	}
}

func TestParseConfig(t *testing.T) {
	tests := []struct {
		name    string
		js      string
		want    [3]string // threshold, base, max
		wantErr bool
	}{
		{"defaults", `{}`, [3]string{"3", "1s", "30s"}, false},
		{"set", `{"ejectionThreshold":5,"baseEjectionTime":"2s","maxEjectionTime":"1m"}`, [3]string{"5", "2s", "1m0s"}, false},
		{"off", `{"ejectionThreshold":0}`, [3]string{"0", "1s", "30s"}, false},
		{"bad duration", `{"baseEjectionTime":"soon"}`, [3]string{}, true},
		{"negative", `{"baseEjectionTime":"-1s"}`, [3]string{}, true},
		{"max below base", `{"baseEjectionTime":"10s","maxEjectionTime":"1s"}`, [3]string{}, true},
		{"not json", `{`, [3]string{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := builder{}.ParseConfig([]byte(tt.js))
			if (err != nil) != tt.wantErr {
				t.Fatalf("ParseConfig(%s) error = %v, wantErr %v", tt.js, err, tt.wantErr)
			}
			if err != nil {
				return
			}
			c := cfg.(*lbConfig)
			got := [3]string{fmt.Sprint(c.threshold), c.base.String(), c.max.String()}
			if diff := cmp.Diff(got, tt.want); diff != "" {
				t.Fatalf("(-got +want) %s", diff)
			}
		})
	}
}

// grpc.NewClient validates a default service config, so a config it
// accepts is one every channel accepts.
func TestServiceConfigParses(t *testing.T) {
	for _, sc := range []string{DefaultServiceConfig, ServiceConfig(WithMaxAttempts(1), WithoutHealthCheck()), ServiceConfig(WithEjection(0, 1, 2))} {
		cc, err := grpc.NewClient("passthrough:///x", grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithDefaultServiceConfig(sc))
		if err != nil {
			t.Errorf("service config %s: %v", sc, err)
			continue
		}
		cc.Close()
	}
}
