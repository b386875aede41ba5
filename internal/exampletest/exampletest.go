// Package exampletest runs example programs from tests: it builds a main
// package, starts it with the given arguments and environment, collects its
// output, and stops it with SIGTERM, every step bounded by a deadline.
package exampletest

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Timeout bounds building, waiting for output, and stopping.
const Timeout = 60 * time.Second

// Build compiles the main package pkg (an import path or ./relative path)
// into a temporary directory and returns the binary's path.
func Build(t *testing.T, pkg string) string {
	t.Helper()
	name := filepath.Base(pkg)
	if name == "." || name == "/" {
		name = "main"
	}
	bin := filepath.Join(t.TempDir(), name)
	ctx, cancel := context.WithTimeout(context.Background(), 5*Timeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, pkg).CombinedOutput()
	if err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, out)
	}
	return bin
}

// Process is a running example program.
type Process struct {
	t    *testing.T
	cmd  *exec.Cmd
	mu   sync.Mutex
	out  bytes.Buffer
	done chan struct{}
	err  error
}

type lockedWriter struct{ p *Process }

func (w lockedWriter) Write(b []byte) (int, error) {
	w.p.mu.Lock()
	defer w.p.mu.Unlock()
	return w.p.out.Write(b)
}

// Start runs bin with args and env (added to the test's environment). The
// process is stopped at cleanup if it is still running.
func Start(t *testing.T, bin string, env []string, args ...string) *Process {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	p := &Process{t: t, cmd: cmd, done: make(chan struct{})}
	cmd.Stdout = lockedWriter{p}
	cmd.Stderr = lockedWriter{p}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			p.Stop()
		}
	})
	return p
}

// Output returns everything the process printed so far.
func (p *Process) Output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// WaitFor waits until the output contains s.
func (p *Process) WaitFor(s string) {
	p.t.Helper()
	deadline := time.Now().Add(Timeout)
	for !strings.Contains(p.Output(), s) {
		select {
		case <-p.done:
			if strings.Contains(p.Output(), s) {
				return
			}
			p.t.Fatalf("%s exited (%v) without printing %q; output:\n%s", p.cmd.Path, p.err, s, p.Output())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("%s did not print %q within %v; output:\n%s", p.cmd.Path, s, Timeout, p.Output())
		}
	}
}

// Wait waits for the process to exit by itself and returns its error.
func (p *Process) Wait() error {
	p.t.Helper()
	select {
	case <-p.done:
		return p.err
	case <-time.After(Timeout):
		p.cmd.Process.Kill()
		<-p.done
		p.t.Fatalf("%s did not exit within %v; output:\n%s", p.cmd.Path, Timeout, p.Output())
		return nil
	}
}

// Signal sends sig (SIGSTOP to freeze the process, SIGCONT to thaw it).
func (p *Process) Signal(sig os.Signal) error { return p.cmd.Process.Signal(sig) }

// Stop sends SIGTERM, waits for the exit (killing after the timeout) and
// returns the exit error. A process frozen with SIGSTOP is continued, so
// that it can act on the SIGTERM.
func (p *Process) Stop() error {
	p.cmd.Process.Signal(syscall.SIGTERM)
	p.cmd.Process.Signal(syscall.SIGCONT)
	select {
	case <-p.done:
		return p.err
	case <-time.After(Timeout):
		p.cmd.Process.Kill()
		<-p.done
		p.t.Errorf("%s ignored SIGTERM for %v; output:\n%s", p.cmd.Path, Timeout, p.Output())
		return p.err
	}
}

// Kill sends SIGKILL (a crash: no deregistration, no goodbye) and waits
// for the exit.
func (p *Process) Kill() {
	p.cmd.Process.Kill()
	<-p.done
}
