package etcd_test

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/microgrpc/microgrpc/balancer/randomhash"
	"github.com/microgrpc/microgrpc/internal/greetertest"
	pb "github.com/microgrpc/microgrpc/proto/greeter"
	"github.com/microgrpc/microgrpc/resolver/etcd"
)

// BenchmarkFirstCall measures a new client's first call to a service of
// n nodes: one real greeter and n-1 records of nodes that refuse
// connections, as after a crash of most of a fleet (the client must not
// wait for them). It reports milliseconds per first call and the bytes of
// the service's records.
func BenchmarkFirstCall(b *testing.B) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := grpc.NewServer()
	pb.RegisterGreeterServer(srv, &greetertest.Server{Node: "real"})
	go srv.Serve(lis)
	defer srv.Stop()
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{server.Endpoint()}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	for _, n := range []int{250, 1000, 2000} {
		b.Run(fmt.Sprint("nodes=", n), func(b *testing.B) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			pfx := fmt.Sprintf("/bench/firstcall-%d-%d", n, time.Now().UnixNano())
			defer c.Delete(context.Background(), pfx, clientv3.WithPrefix())
			bytes := 0
			for i := 0; i < n; i += 100 {
				var ops []clientv3.Op
				for j := i; j < min(i+100, n); j++ {
					id, addr := fmt.Sprint("n", j), fmt.Sprintf("127.0.0.1:%d", 1+j%1000) // refused
					if j == n/2 {
						id, addr = "real", lis.Addr().String()
					}
					v := fmt.Sprintf(`{"Op":0,"Addr":%q,"Metadata":{"id":%q,"service":"big","version":"v1","metadata":{"zone":"z%d","build":"2026.12.01-abcdef"},"endpoints":[{"Name":"/greeter.Greeter/Hello"},{"Name":"/greeter.Greeter/HelloStream","ServerStreaming":true}]}}`, addr, id, j%3)
					bytes += len(v)
					ops = append(ops, clientv3.OpPut(pfx+"/big/"+id, v))
				}
				if _, err := c.Txn(ctx).Then(ops...).Commit(); err != nil {
					b.Fatal(err)
				}
			}
			r, err := etcd.NewRegistry(etcd.WithEndpoints(server.Endpoint()), etcd.WithPrefix(pfx), etcd.WithLogger(quiet))
			if err != nil {
				b.Fatal(err)
			}
			defer r.Close()
			builder := etcd.NewBuilder(r)
			var total time.Duration
			for b.Loop() {
				start := time.Now()
				cc, err := grpc.NewClient("etcd:///big", append(randomhash.DialOptions(),
					grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithResolvers(builder))...)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := pb.NewGreeterClient(cc).Hello(ctx, &pb.Request{}, grpc.WaitForReady(true)); err != nil {
					b.Fatal(err)
				}
				total += time.Since(start)
				cc.Close()
			}
			b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms/first-call")
			b.ReportMetric(float64(bytes), "record-bytes")
		})
	}
}
