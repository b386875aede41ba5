package main_test

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if os.Getenv("NETNS_RUN_TEST_LIST") != "" {
		// Run by netns-run: print the interfaces that are up.
		ifs, _ := net.Interfaces()
		for _, i := range ifs {
			if i.Flags&net.FlagUp != 0 {
				os.Stdout.WriteString(i.Name + " " + i.Flags.String() + "\n")
			}
		}
		os.Exit(0)
	}
	goleak.VerifyTestMain(m)
}

func build(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "netns-run")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// The command runs with loopback alone, up and multicast, and its exit
// code comes back.
func TestRunsInAPrivateNamespace(t *testing.T) {
	bin := build(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, os.Args[0])
	cmd.Env = append(os.Environ(), "NETNS_RUN_TEST_LIST=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		if strings.Contains(string(out), "namespace") {
			t.Skipf("no network namespaces here: %s", out)
		}
		t.Fatalf("%v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 1 || !strings.HasPrefix(lines[0], "lo ") || !strings.Contains(lines[0], "multicast") {
		t.Fatalf("interfaces up inside: %q, want lo alone with multicast", lines)
	}
	err = exec.CommandContext(ctx, bin, "sh", "-c", "exit 3").Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 3 {
		t.Fatalf("exit code: %v, want 3", err)
	}
	if err := exec.CommandContext(ctx, bin).Run(); !errors.As(err, &ee) || ee.ExitCode() != 2 {
		t.Fatalf("no command: %v, want usage and exit code 2", err)
	}
}

// A process the command leaves running in the namespace is ended when
// the command ends.
func TestLeftoversEnded(t *testing.T) {
	bin := build(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pidFile := filepath.Join(t.TempDir(), "pid")
	// sleep in the background, its pid written down, then the shell exits.
	if out, err := exec.CommandContext(ctx, bin, "sh", "-c", "sleep 300 & echo $! > "+pidFile).CombinedOutput(); err != nil {
		if strings.Contains(string(out), "namespace") {
			t.Skipf("no network namespaces here: %s", out)
		}
		t.Fatalf("%v\n%s", err, out)
	}
	raw, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid := strings.TrimSpace(string(raw))
	deadline := time.Now().Add(10 * time.Second)
	for {
		stat, err := os.ReadFile("/proc/" + pid + "/stat")
		if err != nil || strings.Contains(string(stat), ") Z ") {
			return // gone (or a zombie waiting for its reaper)
		}
		if time.Now().After(deadline) {
			t.Fatalf("the background process %s still runs after netns-run returned", pid)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
