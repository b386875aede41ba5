// Package etcdtest starts a real, single-member etcd server in-process for
// tests (go.etcd.io/etcd/server/v3/embed), on 127.0.0.1 with free ports and
// a temporary data directory, and can stop and restart it on the same data
// and client port to test recovery.
package etcdtest

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"sync"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// StartTimeout bounds how long Start waits for the server to be ready.
const StartTimeout = 30 * time.Second

// Server is an embedded etcd.
type Server struct {
	dir        string
	clientPort int
	peerPort   int
	tls        *TLSFiles // nil: plaintext

	mu sync.Mutex
	e  *embed.Etcd
}

// TLSFiles are the PEM files of a server with TLS on its client port:
// it serves Cert and requires client certificates signed by CA.
type TLSFiles struct{ Cert, Key, CA string }

// Start starts a server in a new temporary directory. Call Close when done.
func Start() (*Server, error) { return start(nil) }

// StartTLS is Start with TLS (and client certificates) on the client
// port; clients reach it at "https://" + Endpoint().
func StartTLS(f TLSFiles) (*Server, error) { return start(&f) }

func start(tlsFiles *TLSFiles) (*Server, error) {
	dir, err := os.MkdirTemp("", "etcdtest-")
	if err != nil {
		return nil, err
	}
	s := &Server{dir: dir, tls: tlsFiles}
	if s.clientPort, err = freePort(); err != nil {
		return nil, err
	}
	if s.peerPort, err = freePort(); err != nil {
		return nil, err
	}
	if err := s.start(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return s, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func (s *Server) start() error {
	cfg := embed.NewConfig()
	cfg.Name = "etcdtest"
	cfg.Dir = s.dir
	cu := url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", s.clientPort)}
	if s.tls != nil {
		cu.Scheme = "https"
		cfg.ClientTLSInfo = transport.TLSInfo{CertFile: s.tls.Cert, KeyFile: s.tls.Key, TrustedCAFile: s.tls.CA, ClientCertAuth: true}
	}
	pu := url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", s.peerPort)}
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{cu}, []url.URL{cu}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{pu}, []url.URL{pu}
	cfg.InitialCluster = cfg.Name + "=" + pu.String()
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	// Keep compaction out of the way and the server quick to elect itself.
	cfg.TickMs = 10
	cfg.ElectionMs = 100
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return fmt.Errorf("etcdtest: start: %w", err)
	}
	t := time.NewTimer(StartTimeout)
	defer t.Stop()
	select {
	case <-e.Server.ReadyNotify():
	case <-t.C:
		e.Close()
		return fmt.Errorf("etcdtest: server not ready after %v", StartTimeout)
	}
	s.mu.Lock()
	s.e = e
	s.mu.Unlock()
	return nil
}

// Endpoint is the client address, "127.0.0.1:port"; it stays the same
// across Stop and Restart.
func (s *Server) Endpoint() string { return fmt.Sprintf("127.0.0.1:%d", s.clientPort) }

// Stop stops the server, keeping its data.
func (s *Server) Stop() {
	s.mu.Lock()
	e := s.e
	s.e = nil
	s.mu.Unlock()
	if e != nil {
		e.Close()
		<-e.Server.StopNotify()
	}
}

// Restart starts the stopped server again on the same data and ports.
func (s *Server) Restart() error { return s.start() }

// Close stops the server and removes its data.
func (s *Server) Close() {
	s.Stop()
	os.RemoveAll(s.dir)
}
