package main

import (
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/microgrpc/microgrpc/internal/exampletest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestWrappersRunInOrder(t *testing.T) {
	p := exampletest.Start(t, exampletest.Build(t, "."), nil)
	if err := p.Wait(); err != nil {
		t.Fatalf("%v\n%s", err, p.Output())
	}
	want := strings.Join([]string{
		"[wrapper] client request: /greeter.Greeter/Hello",
		"[wrapper] server request: /greeter.Greeter/Hello",
		"[wrapper] attempt on node greeter-1: /greeter.Greeter/Hello, error <nil>",
		"Hello John",
	}, "\n")
	if got := strings.TrimSpace(p.Output()); got != want {
		t.Fatalf("output:\n%s\nwant:\n%s", got, want)
	}
}
