// Package tls holds the mutual TLS example's test: gencerts, server and
// client are its programs (see README.md).
package tls
