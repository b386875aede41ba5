// Package natstest starts a real NATS server in-process for tests
// (github.com/nats-io/nats-server/v2/server) on 127.0.0.1 with a free port.
package natstest

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Start starts a server and waits until it accepts connections. Call
// Shutdown on it when done.
func Start() (*server.Server, error) { return StartOn(-1) }

// StartOn starts a server on the given port (-1: a free one), e.g. to
// restart one where clients expect it.
func StartOn(port int) (*server.Server, error) {
	return start(&server.Options{Host: "127.0.0.1", Port: port, NoLog: true, NoSigs: true})
}

// StartJetStream starts a server with JetStream on, storing in dir (a
// file store), on the given port (-1: a free one). Started again on the
// same dir and port, it is the same server after a restart.
func StartJetStream(dir string, port int) (*server.Server, error) {
	return start(&server.Options{Host: "127.0.0.1", Port: port, NoLog: true, NoSigs: true, JetStream: true, StoreDir: dir})
}

// StartTLS starts a server that speaks TLS only (clients dial
// tls://127.0.0.1:port) and, with ClientCAs set in cfg, requires client
// certificates.
func StartTLS(cfg *tls.Config) (*server.Server, error) {
	return start(&server.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true,
		TLS: true, TLSConfig: cfg, TLSVerify: cfg.ClientCAs != nil, TLSTimeout: 5})
}

// StartTLSFiles is StartTLS with a server's PEM files: its certificate
// and key, and the CA that clients' certificates must chain to.
func StartTLSFiles(certFile, keyFile, caFile string) (*server.Server, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("natstest: %w", err)
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("natstest: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("natstest: no certificate in %s", caFile)
	}
	return StartTLS(&tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert},
		ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert})
}

// TLSURL is the tls:// URL of a server started with TLS.
func TLSURL(s *server.Server) string { return strings.Replace(s.ClientURL(), "nats://", "tls://", 1) }

func start(opts *server.Options) (*server.Server, error) {
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("natstest: %w", err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		return nil, fmt.Errorf("natstest: server not ready after 10s")
	}
	return s, nil
}

// Stop shuts s down and waits for it.
func Stop(s *server.Server) {
	s.Shutdown()
	s.WaitForShutdown()
}

// Restartable is a JetStream server that a test can stop and start again
// on the same port and store, as a crashed or upgraded server comes back
// where its clients expect it.
type Restartable struct {
	dir  string
	port int
	mu   sync.Mutex
	srv  *server.Server // nil while stopped
}

// StartRestartable starts a JetStream server storing in dir on a free
// port.
func StartRestartable(dir string) (*Restartable, error) {
	s, err := StartJetStream(dir, -1)
	if err != nil {
		return nil, err
	}
	return &Restartable{dir: dir, port: s.Addr().(*net.TCPAddr).Port, srv: s}, nil
}

// URL is the server's client URL, the same across restarts.
func (r *Restartable) URL() string { return fmt.Sprintf("nats://127.0.0.1:%d", r.port) }

// Stop shuts the server down; it is idempotent.
func (r *Restartable) Stop() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.srv != nil {
		Stop(r.srv)
		r.srv = nil
	}
}

// Restart stops the server (if it runs) and starts it again on the same
// port and store: what was stored in files is there again, what was in
// memory is gone.
func (r *Restartable) Restart() error {
	r.Stop()
	r.mu.Lock()
	defer r.mu.Unlock()
	s, err := StartJetStream(r.dir, r.port)
	if err != nil {
		return err
	}
	r.srv = s
	return nil
}
