// Package certs is the TLS material of a service, read from PEM files and
// read again when the files change, so that certificates rotate without a
// restart: a certificate and key (served by servers, and presented by
// clients for mutual TLS) and a CA bundle (that servers require client
// certificates to chain to, and clients verify servers against).
//
// Handshakes ask for the current material; a file's change (its size or
// modification time) is noticed at the next handshake after at most
// CheckInterval. A change that does not load (a half-written file, a key
// that does not match) keeps the material in use and is logged once.
//
// # Clients
//
// A client verifies a server with crypto/tls itself, for the host it
// dials: a DNS name, or an IP address, which the server's certificate must
// then carry as an IP SAN. A handshake that names no host fails; nothing is
// ever accepted unchecked.
//
//   - gRPC: grpc.WithTransportCredentials(src.ClientCredentials()). Each
//     handshake takes the current files, and grpc-go names the host from
//     the authority: a connection to a node by its address ("10.0.0.7:8080")
//     verifies 10.0.0.7, one to "etcd:///greeter" verifies greeter.
//   - Anything else (etcd's client, nats.go, net/http): ClientConfig, with
//     ServerName left empty; the library sets it to the host of each
//     connection. It keeps the CA it was made with.
package certs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	"google.golang.org/grpc/credentials"
)

// CheckInterval is how often, at most, the files are looked at again.
var CheckInterval = time.Second

// Files names the PEM files. CertFile and KeyFile go together; CAFile may
// be given alone (a client that only verifies servers).
type Files struct {
	CertFile, KeyFile, CAFile string
}

// Empty reports whether no file is named.
func (f Files) Empty() bool { return f.CertFile == "" && f.KeyFile == "" && f.CAFile == "" }

// Source is the current material of Files.
type Source struct {
	files  Files
	logger *slog.Logger
	now    func() time.Time

	mu        sync.Mutex
	checked   time.Time
	stamps    [3]stamp
	cert      *tls.Certificate // nil without CertFile
	pool      *x509.CertPool   // nil without CAFile
	lastError string
}

type stamp struct {
	size int64
	mod  time.Time
}

// ErrInvalid wraps every error about the files.
var ErrInvalid = errors.New("certs: invalid TLS files")

// New loads files; an error says which file and why.
func New(files Files, logger *slog.Logger) (*Source, error) {
	if (files.CertFile == "") != (files.KeyFile == "") {
		return nil, fmt.Errorf("%w: a certificate file needs its key file and a key file its certificate (cert %q, key %q)",
			ErrInvalid, files.CertFile, files.KeyFile)
	}
	if logger == nil {
		logger = slog.Default()
	}
	s := &Source{files: files, logger: logger, now: time.Now}
	stamps, err := s.stat()
	if err != nil {
		return nil, err
	}
	if err := s.load(stamps); err != nil {
		return nil, err
	}
	s.checked = s.now()
	return s, nil
}

func (s *Source) stat() ([3]stamp, error) {
	var out [3]stamp
	for i, name := range []string{s.files.CertFile, s.files.KeyFile, s.files.CAFile} {
		if name == "" {
			continue
		}
		fi, err := os.Stat(name)
		if err != nil {
			return out, fmt.Errorf("%w: %v", ErrInvalid, err)
		}
		out[i] = stamp{size: fi.Size(), mod: fi.ModTime()}
	}
	return out, nil
}

// load reads the files and, when they are good, makes them current.
func (s *Source) load(stamps [3]stamp) error {
	var cert *tls.Certificate
	if s.files.CertFile != "" {
		c, err := tls.LoadX509KeyPair(s.files.CertFile, s.files.KeyFile)
		if err != nil {
			return fmt.Errorf("%w: certificate %s and key %s: %v", ErrInvalid, s.files.CertFile, s.files.KeyFile, err)
		}
		cert = &c
	}
	var pool *x509.CertPool
	if s.files.CAFile != "" {
		pem, err := os.ReadFile(s.files.CAFile)
		if err != nil {
			return fmt.Errorf("%w: %v", ErrInvalid, err)
		}
		pool = x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return fmt.Errorf("%w: CA file %s holds no PEM certificate", ErrInvalid, s.files.CAFile)
		}
	}
	s.cert, s.pool, s.stamps = cert, pool, stamps
	return nil
}

// refresh reloads the files when they changed since the last look, at
// most every CheckInterval.
func (s *Source) refresh() {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	if now.Sub(s.checked) < CheckInterval {
		return
	}
	s.checked = now
	stamps, err := s.stat()
	if err == nil && stamps == s.stamps {
		return
	}
	if err == nil {
		err = s.load(stamps)
	}
	if err != nil {
		if msg := err.Error(); msg != s.lastError {
			s.lastError = msg
			s.logger.Warn("certs: changed TLS files do not load; keeping the ones in use", "error", err)
		}
		return
	}
	s.lastError = ""
	s.logger.Info("certs: TLS files reloaded", "cert", s.files.CertFile, "ca", s.files.CAFile)
}

// Certificate returns the current certificate, or nil without one.
func (s *Source) Certificate() *tls.Certificate {
	s.refresh()
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cert
}

// Pool returns the current CA pool, or nil without a CA file.
func (s *Source) Pool() *x509.CertPool {
	s.refresh()
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pool
}

// HasCert reports whether a certificate file is named.
func (s *Source) HasCert() bool { return s.files.CertFile != "" }

// HasCA reports whether a CA file is named.
func (s *Source) HasCA() bool { return s.files.CAFile != "" }

// ServerConfig returns a server configuration for protocols (ALPN, e.g.
// "h2" for gRPC) that serves the current certificate and, with a CA file,
// requires client certificates that chain to the current CA (mutual TLS).
func (s *Source) ServerConfig(protocols ...string) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: protocols,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			cert := s.Certificate()
			if cert == nil {
				return nil, fmt.Errorf("%w: no certificate to serve", ErrInvalid)
			}
			c := &tls.Config{MinVersion: tls.VersionTLS12, NextProtos: protocols, Certificates: []tls.Certificate{*cert}}
			if pool := s.Pool(); pool != nil {
				c.ClientCAs = pool
				c.ClientAuth = tls.RequireAndVerifyClientCert
			}
			return c, nil
		},
	}
}

// ClientConfig returns a client configuration for protocols that presents
// the current certificate when a server asks for one and verifies servers
// against the CA of the moment of the call (the system's roots without a
// CA file).
//
// Verification is crypto/tls's own: the chain, and the configuration's
// ServerName, an IP address included (checked against the certificate's
// IP SANs). Leave ServerName empty: the library that dials sets it on its
// copy to the host of each connection, a DNS name or an IP (grpc-go from
// the authority, nats.go from the server URL, net/http from the request
// URL, etcd's client from the endpoint). A handshake whose ServerName is
// still empty fails: there is nothing to verify the server against.
//
// The CA is read once, at the call: a configuration made before the CA
// file changed keeps the CA it had. A long-lived client that must follow
// a rotated CA takes a new configuration for each connection, as
// ClientCredentials does for gRPC.
func (s *Source) ClientConfig(protocols ...string) *tls.Config {
	c := &tls.Config{MinVersion: tls.VersionTLS12, NextProtos: protocols, RootCAs: s.Pool()}
	if s.HasCert() {
		c.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return s.Certificate(), nil
		}
	}
	return c
}

// ClientCredentials returns the gRPC transport credentials of a client:
// ClientConfig, taken anew at each handshake so that new connections
// follow the current files, the CA included. grpc-go verifies the server
// for the host of the authority it dials: the address's ServerName when
// the resolver gave one, else the target's authority ("greeter" for
// "etcd:///greeter", "10.0.0.7" for "10.0.0.7:8080"). A connection to a
// node by its address therefore needs the node's IP in its certificate.
func (s *Source) ClientCredentials(protocols ...string) credentials.TransportCredentials {
	return &clientCreds{TransportCredentials: credentials.NewTLS(s.ClientConfig(protocols...)), src: s, protocols: protocols}
}

// clientCreds are grpc-go's TLS credentials over a new ClientConfig at
// each client handshake; the embedded ones give Info and the rest.
type clientCreds struct {
	credentials.TransportCredentials
	src       *Source
	protocols []string
}

func (c *clientCreds) ClientHandshake(ctx context.Context, authority string, raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return credentials.NewTLS(c.src.ClientConfig(c.protocols...)).ClientHandshake(ctx, authority, raw)
}

func (c *clientCreds) Clone() credentials.TransportCredentials {
	return &clientCreds{TransportCredentials: c.TransportCredentials.Clone(), src: c.src, protocols: c.protocols}
}
