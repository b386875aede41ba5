// Package certstest makes throwaway certificate authorities and
// certificates for tests and examples, with crypto/x509 (no openssl, no
// files from elsewhere): ECDSA P-256 keys, PEM files in a directory.
package certstest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"time"
)

// CA is a certificate authority that signs leaf certificates.
type CA struct {
	Cert    *x509.Certificate
	key     *ecdsa.PrivateKey
	CertPEM []byte
}

// NewCA makes a self-signed CA named name, valid for a day.
func NewCA(name string) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &CA{Cert: cert, key: key, CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}, nil
}

// Leaf is what a certificate says of its holder.
type Leaf struct {
	CommonName string
	DNSNames   []string
	IPs        []net.IP
	URIs       []string // e.g. spiffe://example.org/greeter
}

// Issue signs a certificate for l, usable by servers and clients, and
// returns it and its key as PEM.
func (ca *CA) Issue(l Leaf) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: l.CommonName},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:     l.DNSNames,
		IPAddresses:  l.IPs,
	}
	for _, u := range l.URIs {
		pu, err := url.Parse(u)
		if err != nil {
			return nil, nil, err
		}
		tmpl.URIs = append(tmpl.URIs, pu)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.key)
	if err != nil {
		return nil, nil, err
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), nil
}

// Files are the paths of a written certificate, its key and its CA.
type Files struct {
	Cert, Key, CA string
}

// Write issues a certificate for l and writes it, its key and the CA's
// certificate into dir as <name>.crt, <name>.key and <name>-ca.crt.
func (ca *CA) Write(dir, name string, l Leaf) (Files, error) {
	c, k, err := ca.Issue(l)
	if err != nil {
		return Files{}, err
	}
	f := Files{Cert: filepath.Join(dir, name+".crt"), Key: filepath.Join(dir, name+".key"), CA: filepath.Join(dir, name+"-ca.crt")}
	for path, data := range map[string][]byte{f.Cert: c, f.Key: k, f.CA: ca.CertPEM} {
		if err := writeAtomic(path, data); err != nil {
			return Files{}, err
		}
	}
	return f, nil
}

// writeAtomic replaces path with data in one rename, as certificate
// rotation tools do, so that a reader never sees half a file.
func writeAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// WritePair makes a CA and writes, into dir, a server certificate for
// server and a client certificate for ForHost("client"), both of it (see
// Write: server.crt, client.crt, their keys and CA files).
func WritePair(dir string, server Leaf) (srv, cli Files, err error) {
	ca, err := NewCA("ca")
	if err != nil {
		return Files{}, Files{}, err
	}
	if srv, err = ca.Write(dir, "server", server); err != nil {
		return Files{}, Files{}, err
	}
	if cli, err = ca.Write(dir, "client", ForHost("client")); err != nil {
		return Files{}, Files{}, err
	}
	return srv, cli, nil
}

// ForHost is the Leaf of a service reachable on loopback: name as common
// name and DNS name, localhost, 127.0.0.1, and the URIs given.
func ForHost(name string, uris ...string) Leaf {
	return Leaf{CommonName: name, DNSNames: []string{name, "localhost"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}, URIs: uris}
}

// ForOtherHost is the Leaf of a service somewhere else: name as common
// name and DNS name and 192.0.2.1 (TEST-NET-1, never routed) as its IP,
// neither localhost nor 127.0.0.1. A server on loopback that shows it is
// one whose certificate names another host: clients must refuse it.
func ForOtherHost(name string) Leaf {
	return Leaf{CommonName: name, DNSNames: []string{name}, IPs: []net.IP{net.IPv4(192, 0, 2, 1)}}
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		panic(fmt.Sprintf("certstest: random serial: %v", err)) // crypto/rand never fails on Linux
	}
	return n
}
