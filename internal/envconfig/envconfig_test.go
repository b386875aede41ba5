package envconfig_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"go.uber.org/goleak"

	natsbroker "github.com/microgrpc/microgrpc/broker/nats"
	"github.com/microgrpc/microgrpc/internal/envconfig"
	"github.com/microgrpc/microgrpc/resolver/etcd"
	"github.com/microgrpc/microgrpc/resolver/mdns"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The environment names packages export are the table's.
func TestExportedNamesAreTheTables(t *testing.T) {
	for _, c := range []struct{ exported, table string }{
		{etcd.EnvAddress, envconfig.RegistryAddress.Env},
		{natsbroker.EnvAddress, envconfig.BrokerAddress.Env},
		{mdns.EnvInterfaces, envconfig.MDNSInterfaces.Env},
	} {
		if c.exported != c.table {
			t.Errorf("exported %q, table %q", c.exported, c.table)
		}
	}
}

// Every MICRO_* variable is read through this table: no other code reads
// the environment by a literal name, so -h lists everything an operator
// can set.
func TestNoEnvironmentReadOutsideTheTable(t *testing.T) {
	root := filepath.Join("..", "..")
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") ||
			strings.Contains(filepath.ToSlash(path), "internal/envconfig/") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return err
		}
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok || len(call.Args) == 0 {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok || (sel.Sel.Name != "Getenv" && sel.Sel.Name != "LookupEnv") {
				return true
			}
			if lit, ok := call.Args[0].(*ast.BasicLit); ok {
				if v, _ := strconv.Unquote(lit.Value); strings.HasPrefix(v, "MICRO_") {
					t.Errorf("%s: reads %s directly; add it to internal/envconfig", fset.Position(call.Pos()), v)
				}
			}
			if id, ok := call.Args[0].(*ast.Ident); ok && strings.HasPrefix(id.Name, "Env") {
				t.Errorf("%s: reads $%s directly; read it through internal/envconfig", fset.Position(call.Pos()), id.Name)
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("the walk did not start at the module root: %v", err)
	}
}
