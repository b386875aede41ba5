// Command gencerts writes a throwaway certificate authority and the
// certificates of the TLS example into a directory, with crypto/x509 (no
// openssl needed):
//
//	go run ./examples/tls/gencerts -dir /tmp/microgrpc-tls
//
// ca.crt is the CA; greeter.crt/.key the server's (DNS names greeter and
// localhost, 127.0.0.1, spiffe://example.org/greeter); client.crt/.key a
// caller's (spiffe://example.org/client). Valid for a day.
package main

import (
	"flag"
	"fmt"
	"log"
	"os"

	"github.com/microgrpc/microgrpc/internal/certs/certstest"
)

func main() {
	dir := flag.String("dir", "certs", "directory to write the files to")
	flag.Parse()
	if err := os.MkdirAll(*dir, 0o700); err != nil {
		log.Fatal(err)
	}
	ca, err := certstest.NewCA("microgrpc example CA")
	if err != nil {
		log.Fatal(err)
	}
	for _, c := range []struct {
		name string
		leaf certstest.Leaf
	}{
		{"greeter", certstest.ForHost("greeter", "spiffe://example.org/greeter")},
		{"client", certstest.ForHost("client", "spiffe://example.org/client")},
	} {
		f, err := ca.Write(*dir, c.name, c.leaf)
		if err != nil {
			log.Fatal(err)
		}
		// One CA file for all: rename the first copy, drop the others.
		if err := os.Rename(f.CA, *dir+"/ca.crt"); err != nil {
			log.Fatal(err)
		}
	}
	fmt.Println("wrote", *dir+"/{ca.crt,greeter.crt,greeter.key,client.crt,client.key}")
}
