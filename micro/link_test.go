package micro_test

import (
	"debug/elf"
	"runtime"
	"strings"
	"testing"

	"github.com/microgrpc/microgrpc/internal/exampletest"
)

// symbols returns the names in the symbol table of the binary at path.
func symbols(t *testing.T, path string) []string {
	t.Helper()
	f, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	syms, err := f.Symbols()
	if err != nil {
		t.Fatal(err)
	}
	names := make([]string, len(syms))
	for i, s := range syms {
		names[i] = s.Name
	}
	return names
}

// linked lists the symbols of names that start with prefix.
func linked(names []string, prefix string) []string {
	var got []string
	for _, n := range names {
		if strings.HasPrefix(n, prefix) {
			got = append(got, n)
		}
	}
	return got
}

// A service pays only for what it uses: a program that imports micro and
// nothing else, takes its settings from flags and never publishes, links
// none of the plugins it did not import, not even the default broker; one
// that publishes links the broker, and it works.
func TestOnlyWhatIsUsedIsLinked(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads the ELF symbol table")
	}
	plain := symbols(t, exampletest.Build(t, "./testdata/nopubsub"))
	if len(linked(plain, "github.com/microgrpc/microgrpc/micro.(*Service).Run")) == 0 {
		t.Fatal("the service's own code is not in its symbol table: the check below would prove nothing")
	}
	for _, prefix := range []string{
		"github.com/microgrpc/microgrpc/broker/direct.", // the default broker, never used
		"github.com/microgrpc/microgrpc/micro/pubsub.",
		"github.com/microgrpc/microgrpc/proto/delivery.",
		"github.com/microgrpc/microgrpc/broker/nats.",
		"github.com/nats-io/",
		"go.etcd.io/",
		"github.com/prometheus/",
		"go.opentelemetry.io/",
	} {
		if got := linked(plain, prefix); len(got) > 0 {
			t.Errorf("a service that does not use %s links %d of its symbols, %s among them", prefix, len(got), got[0])
		}
	}

	bin := exampletest.Build(t, "./testdata/pubsub")
	if len(linked(symbols(t, bin), "github.com/microgrpc/microgrpc/broker/direct.")) == 0 {
		t.Fatal("a service that publishes through the http broker does not link it")
	}
	p := exampletest.Start(t, bin, nil)
	if err := p.Wait(); err != nil {
		t.Fatalf("pubsub: %v\n%s", err, p.Output())
	}
	if strings.TrimSpace(p.Output()) != "received John" {
		t.Fatalf("pubsub printed %q, want received John", p.Output())
	}
}
