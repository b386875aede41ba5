// Command netns-run runs a command inside a private network namespace that
// holds only a loopback interface, brought up with multicast on: mDNS and
// every other packet the command sends stay on this machine. Use it to try
// the mDNS examples without announcing services on your network:
//
//	go mod download   # the namespace has no route to the module proxy
//	go run ./cmd/netns-run go run ./examples/greeter
//	go run ./cmd/netns-run bash -c 'go run ./examples/greeter/server & sleep 5; go run ./examples/greeter/client'
//
// Programs that must find each other have to share one namespace: start
// them from one netns-run, as in the last line. It works on Linux, as root
// or, where unprivileged user namespaces are allowed, as any user.
package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/microgrpc/microgrpc/internal/netns"
)

func main() {
	if len(os.Args) < 2 || os.Args[1] == "-h" || os.Args[1] == "--help" {
		fmt.Fprintln(os.Stderr, "usage: netns-run CMD [ARGS...]\n\nRuns CMD inside a private network namespace with only loopback (multicast on).")
		os.Exit(2)
	}
	if err := netns.Enter(); err != nil {
		fmt.Fprintln(os.Stderr, "netns-run:", err)
		os.Exit(1)
	}
	cmd := exec.Command(os.Args[1], os.Args[2:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	// The command ends with us, whatever ends us.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "netns-run:", err)
		os.Exit(127)
	}
	// SIGINT and SIGTERM are passed on; the command decides.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		for s := range sigs {
			cmd.Process.Signal(s)
		}
	}()
	err := cmd.Wait()
	// What the command left running in the namespace (a server started in
	// the background by a shell, whose "go run" was killed but not its
	// program) would keep running unseen: end it too.
	endLeftovers()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		os.Exit(ee.ExitCode())
	case err != nil:
		fmt.Fprintln(os.Stderr, "netns-run:", err)
		os.Exit(1)
	}
}

// endLeftovers sends SIGTERM to every other process in this network
// namespace, and SIGKILL to those still there after two seconds. The
// namespace is ours alone, so they are the command's.
func endLeftovers() {
	self, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		return
	}
	others := func() []int {
		var pids []int
		entries, _ := os.ReadDir("/proc")
		for _, e := range entries {
			pid, err := strconv.Atoi(e.Name())
			if err != nil || pid == os.Getpid() {
				continue
			}
			if ns, err := os.Readlink("/proc/" + e.Name() + "/ns/net"); err == nil && ns == self {
				pids = append(pids, pid)
			}
		}
		return pids
	}
	pids := others()
	if len(pids) == 0 {
		return
	}
	for _, pid := range pids {
		syscall.Kill(pid, syscall.SIGTERM)
	}
	deadline := time.Now().Add(2 * time.Second)
	for len(others()) > 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	for _, pid := range others() {
		syscall.Kill(pid, syscall.SIGKILL)
	}
}
