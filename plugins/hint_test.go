package plugins

import (
	"errors"
	"strings"
	"testing"
)

// A plugin of this module that the program did not link is named with the
// import that adds it.
func TestUnlinkedPluginNamesItsPackage(t *testing.T) {
	reg := &table[RegistryFactory]{kind: "registry", m: map[string]RegistryFactory{}, hints: registries.hints}
	_, err := reg.get("etcd")
	if !errors.Is(err, ErrUnknownPlugin) || !strings.Contains(err.Error(), `import _ "github.com/microgrpc/microgrpc/plugins/etcd"`) {
		t.Fatalf("get(etcd) with etcd not linked = %v, want the import that adds it", err)
	}
}
