package controlplane_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"

	"github.com/microgrpc/microgrpc/micro/controlplane"
	pb "github.com/microgrpc/microgrpc/proto/greeter"
	"github.com/microgrpc/microgrpc/resolver/memory"
)

// envNodeModules names a directory whose node_modules holds @grpc/grpc-js,
// @grpc/grpc-js-xds and @grpc/proto-loader (.ci/run installs them there);
// without it the test installs them into a temporary directory with npm.
const envNodeModules = "MICROGRPC_NODE_MODULES"

const nodeHint = "install Node.js and npm (apt-get install nodejs npm), and optionally " +
	"npm install --prefix DIR @grpc/grpc-js @grpc/grpc-js-xds @grpc/proto-loader with " + envNodeModules + "=DIR"

// nodeModules returns a directory with the npm packages of the Node
// client, or skips the test saying what to install.
func nodeModules(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("node"); err != nil {
		t.Skip("node not found: " + nodeHint)
	}
	if dir := os.Getenv(envNodeModules); dir != "" {
		return dir
	}
	if _, err := exec.LookPath("npm"); err != nil {
		t.Skip("npm not found: " + nodeHint)
	}
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "npm", "install", "--prefix", dir, "--no-audit", "--no-fund", "--loglevel=error",
		"@grpc/grpc-js", "@grpc/grpc-js-xds", "@grpc/proto-loader")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Skipf("npm install failed (%v), is the npm registry reachable? %s\n%s", err, nodeHint, out)
	}
	return dir
}

// Node's own xDS client (@grpc/grpc-js-xds) calls the greeter through
// xds:///greeter and reaches every node.
func TestNodeXDSClientReachesEveryNode(t *testing.T) {
	modules := nodeModules(t)
	reg := memory.NewRegistry()
	for _, id := range []string{"n1", "n2", "n3"} {
		startInprocNode(t, reg, id, "", map[string]string{"zone": "z-" + id})
	}
	cp := newControlPlane(t, reg)
	addr := serveControlPlane(t, cp)
	bootstrap, err := controlplane.Bootstrap(controlplane.BootstrapConfig{ServerURI: addr, NodeID: "node-client"})
	if err != nil {
		t.Fatal(err)
	}
	script, err := filepath.Abs("testdata/xds_client.js")
	if err != nil {
		t.Fatal(err)
	}
	// The greeter's descriptors with everything they import, as the Go
	// code has them: the .proto files of its imports (google/api) are not
	// in the repository.
	proto := filepath.Join(t.TempDir(), "greeter.protoset")
	if err := os.WriteFile(proto, descriptorSet(t, pb.File_greeter_greeter_proto), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", script, proto, "60")
	cmd.Env = append(os.Environ(), "NODE_PATH="+filepath.Join(modules, "node_modules"), "GRPC_XDS_BOOTSTRAP_CONFIG="+string(bootstrap))
	cmd.Stderr = tWriter{t}
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node client: %v; printed %s", err, out)
	}
	var got struct {
		Nodes  map[string]int `json:"nodes"`
		Failed int            `json:"failed"`
		Errors []string       `json:"errors"`
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("node client printed %q: %v", out, err)
	}
	t.Logf("Node client: answers %v, %d failed", got.Nodes, got.Failed)
	if got.Failed > 0 {
		t.Errorf("%d of the Node client's calls failed: %v", got.Failed, got.Errors)
	}
	for _, id := range []string{"n1", "n2", "n3"} {
		if got.Nodes[id] == 0 {
			t.Errorf("node %s got none of the Node client's calls: %v", id, got.Nodes)
		}
	}
}

// descriptorSet is fd and its imports, dependencies first, as a
// serialized FileDescriptorSet.
func descriptorSet(t *testing.T, fd protoreflect.FileDescriptor) []byte {
	t.Helper()
	var set descriptorpb.FileDescriptorSet
	seen := map[string]bool{}
	var add func(protoreflect.FileDescriptor)
	add = func(fd protoreflect.FileDescriptor) {
		if seen[fd.Path()] {
			return
		}
		seen[fd.Path()] = true
		for i := range fd.Imports().Len() {
			add(fd.Imports().Get(i).FileDescriptor)
		}
		set.File = append(set.File, protodesc.ToFileDescriptorProto(fd))
	}
	add(fd)
	b, err := proto.Marshal(&set)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
