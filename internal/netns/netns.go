//go:build linux

// Package netns runs a process inside a private network namespace that
// holds only a loopback interface, brought up with multicast on, so that
// mDNS (and everything else) it sends cannot leave the machine.
//
// Tests call [Main] from TestMain; programs call [Enter] first thing in
// main. Both re-execute the current binary in a new network namespace
// (plus a new user namespace when not root, mapping the user to root
// inside) and pass its exit code through. When namespaces cannot be made
// they fail with an error saying why: running mDNS outside is never the
// fallback.
package netns

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// envInside marks the re-executed child.
const envInside = "MICROGRPC_NETNS_INSIDE"

// Inside reports whether this process runs in the private namespace made
// by this package.
func Inside() bool { return os.Getenv(envInside) == "1" }

// Main runs m inside a private network namespace and returns the exit code
// for os.Exit. In the parent it re-executes the test binary with the same
// arguments and returns the child's code; in the child it prepares the
// namespace and runs the tests (run, if not nil, wraps m.Run, e.g.
// goleak.VerifyTestMain-style checks).
func Main(m *testing.M, run func(*testing.M) int) int {
	if run == nil {
		run = (*testing.M).Run
	}
	if Inside() {
		if err := setUp(); err != nil {
			fmt.Fprintln(os.Stderr, "netns:", err)
			return 1
		}
		return run(m)
	}
	code, err := reexec()
	if err != nil {
		fmt.Fprintln(os.Stderr, "netns: cannot run the tests in a private network namespace, and they multicast,", "so they must not run outside one:", err)
		return 1
	}
	return code
}

// Enter makes a program continue inside a private network namespace: in
// the parent it re-executes the program there, waits, and exits with the
// child's code (it does not return); in the child it prepares the
// namespace and returns nil.
func Enter() error {
	if Inside() {
		return setUp()
	}
	code, err := reexec()
	if err != nil {
		return err
	}
	os.Exit(code)
	return nil
}

func reexec() (int, error) {
	exe, err := os.Executable()
	if err != nil {
		return 0, err
	}
	cmd := exec.Command(exe, os.Args[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), envInside+"=1")
	attr := &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET, Pdeathsig: syscall.SIGKILL}
	if os.Getuid() != 0 {
		attr.Cloneflags |= syscall.CLONE_NEWUSER
		attr.UidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getuid(), Size: 1}}
		attr.GidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}}
		attr.GidMappingsEnableSetgroups = false
	}
	cmd.SysProcAttr = attr
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("start in a new network namespace (CLONE_NEWNET%s): %w (unprivileged user namespaces may be disabled: see sysctl kernel.unprivileged_userns_clone / user.max_user_namespaces)",
			map[bool]string{true: "|CLONE_NEWUSER", false: ""}[os.Getuid() != 0], err)
	}
	// Signals to the parent (Ctrl-C, SIGTERM from a test harness) go to the
	// child too; the parent just waits.
	err = cmd.Wait()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal()), nil
		}
		return ee.ExitCode(), nil
	}
	if err != nil {
		return 0, err
	}
	return 0, nil
}

// setUp brings lo up with multicast on, and checks that nothing but
// loopback exists.
func setUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("get lo flags: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP | unix.IFF_MULTICAST)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("bring lo up with multicast: %w", err)
	}
	return CheckPrivate()
}

// CheckPrivate returns an error unless loopback is the only interface that
// is up, i.e. unless packets cannot leave the machine.
func CheckPrivate() error {
	ifaces, err := net.Interfaces()
	if err != nil {
		return err
	}
	for _, ifc := range ifaces {
		if ifc.Flags&net.FlagUp != 0 && ifc.Flags&net.FlagLoopback == 0 {
			return fmt.Errorf("interface %s is up: this is not a private network namespace", ifc.Name)
		}
	}
	return nil
}
