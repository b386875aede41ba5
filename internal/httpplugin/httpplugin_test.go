package httpplugin_test

import (
	"errors"
	"testing"

	"go.uber.org/goleak"

	"github.com/microgrpc/microgrpc/internal/httpplugin"
	"github.com/microgrpc/microgrpc/plugins"
	"github.com/microgrpc/microgrpc/resolver/memory"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// Until something links the broker, the factory says so; then it makes
// one, and still refuses options it cannot work with.
func TestFactoryWorksOnceLinked(t *testing.T) {
	httpplugin.Unlink()
	t.Cleanup(httpplugin.Unlink)
	o := plugins.BrokerOptions{Registry: memory.NewRegistry(), Addrs: []string{"127.0.0.1:0"}}
	if _, err := httpplugin.Factory(o); !errors.Is(err, httpplugin.ErrNotLinked) {
		t.Fatalf("Factory before Link = %v, want ErrNotLinked", err)
	}
	httpplugin.Link()
	httpplugin.Link() // twice is fine
	b, err := httpplugin.Factory(o)
	if err != nil {
		t.Fatal(err)
	}
	if b.String() != "http" {
		t.Fatalf("made a %q broker", b)
	}
	if _, err := httpplugin.Factory(plugins.BrokerOptions{}); err == nil {
		t.Fatal("an http broker without a registry was made")
	}
}
