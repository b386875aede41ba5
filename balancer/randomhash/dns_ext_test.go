package randomhash_test

import (
	"fmt"
	"net"
	"strconv"
	"testing"

	"github.com/miekg/dns"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/microgrpc/microgrpc/balancer/randomhash"
	"github.com/microgrpc/microgrpc/internal/greetertest"
	pb "github.com/microgrpc/microgrpc/proto/greeter"
)

// headlessName is what a Kubernetes headless Service resolves to: one A
// record per ready pod.
const headlessName = "greeter.default.svc.cluster.local."

// dnsServer answers A queries for headlessName with ips (and nothing for
// any other name, the _grpc_config TXT lookup included), on 127.0.0.1,
// the way cluster DNS answers for a headless Service.
func dnsServer(t *testing.T, ips []string) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mux := dns.NewServeMux()
	mux.HandleFunc(".", func(w dns.ResponseWriter, q *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(q)
		if len(q.Question) == 1 && q.Question[0].Name == headlessName && q.Question[0].Qtype == dns.TypeA {
			for _, ip := range ips {
				m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: headlessName, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 5}, A: net.ParseIP(ip)})
			}
		} else if q.Question[0].Name != headlessName {
			m.Rcode = dns.RcodeNameError
		}
		w.WriteMsg(m)
	})
	srv := &dns.Server{PacketConn: pc, Handler: mux}
	started := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }
	go srv.ActivateAndServe()
	<-started
	t.Cleanup(func() { srv.Shutdown() })
	return pc.LocalAddr().String()
}

// listenSamePort listens on port p of every ip (pods share the Service's
// target port), finding a p that is free on all of them.
func listenSamePort(t *testing.T, ips []string) (int, []net.Listener) {
	t.Helper()
	for range 20 {
		first, err := net.Listen("tcp", net.JoinHostPort(ips[0], "0"))
		if err != nil {
			t.Fatal(err)
		}
		port := first.Addr().(*net.TCPAddr).Port
		lis := []net.Listener{first}
		for _, ip := range ips[1:] {
			l, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(port)))
			if err != nil {
				break
			}
			lis = append(lis, l)
		}
		if len(lis) == len(ips) {
			return port, lis
		}
		for _, l := range lis {
			l.Close()
		}
	}
	t.Fatal("no port free on every loopback address")
	return 0, nil
}

// On Kubernetes without a registry: grpc-go's own dns resolver on a
// headless Service gives one address per pod, and randomhash.DialOptions
// spreads calls over all of them and moves them off a pod that goes away.
// The DNS server here is a stand-in for the cluster's, on 127.0.0.1; the
// "pods" listen on 127.0.0.1-3 (all loopback).
func TestDNSTargetWithDialOptions(t *testing.T) {
	ips := []string{"127.0.0.1", "127.0.0.2", "127.0.0.3"}
	port, lis := listenSamePort(t, ips)
	var servers []*grpc.Server
	for i, l := range lis {
		s := grpc.NewServer()
		pb.RegisterGreeterServer(s, &greetertest.Server{Node: ips[i]})
		go s.Serve(l)
		t.Cleanup(s.Stop)
		servers = append(servers, s)
	}
	// dns://<dns server>/<name>:<port>; in a cluster the authority is
	// left out: dns:///greeter.default.svc.cluster.local:8080.
	target := fmt.Sprintf("dns://%s/%s:%d", dnsServer(t, ips), headlessName[:len(headlessName)-1], port)
	cc, err := grpc.NewClient(target, append(randomhash.DialOptions(),
		grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	c := pb.NewGreeterClient(cc)
	waitAll(t, c, ips...)

	// A pod goes away: no call fails, they land on the others.
	servers[0].Stop()
	for i := range 200 {
		rsp, err := c.Hello(ctx(t), &pb.Request{Name: "k8s"})
		if err != nil {
			t.Fatalf("call %d after a pod stopped: %v", i, err)
		}
		if i > 20 && rsp.GetNode() == ips[0] {
			t.Fatalf("call %d answered by the stopped pod", i)
		}
	}
}
