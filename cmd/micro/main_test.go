package main

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/microgrpc/microgrpc/internal/greetertest"
	"github.com/microgrpc/microgrpc/internal/netns"
	"github.com/microgrpc/microgrpc/micro"
	"github.com/microgrpc/microgrpc/micro/pubsub"
	pb "github.com/microgrpc/microgrpc/proto/greeter"
)

// envNode makes the test binary a greeter node with that id (the registry
// and broker come from MICRO_*), until its standard input closes.
const envNode = "MICRO_CLI_TEST_NODE"

// The mDNS tests multicast: every test runs in a private network
// namespace, and so do the node and micro processes they start.
func TestMain(m *testing.M) {
	if id := os.Getenv(envNode); id != "" {
		os.Exit(runNode(id))
	}
	netns.VerifyTestMain(m, netns.ZeroconfProbe,
		// grpc-go's xDS client (TestXDS, a bootstrap with "tls" channel
		// credentials) leaves one certificate file watcher running after
		// the client is closed.
		goleak.IgnoreTopFunction("google.golang.org/grpc/credentials/tls/certprovider/pemfile.(*watcher).run"))
}

// runNode is a greeter node: Greeter (a Hello with metadata x-fail fails
// with FailedPrecondition) and a subscriber of "events" that prints each
// event. Lines on standard input set its health ("not-serving",
// "serving"); its end stops the node.
func runNode(id string) int {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	svc := micro.NewService(micro.WithName("greeter"), micro.WithID(id), micro.WithAddress("127.0.0.1:0"),
		micro.WithContext(ctx), micro.WithSignal(false),
		micro.WithLogger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))),
		micro.WithAfterStart(func(context.Context) error { fmt.Println("ready"); return nil }))
	if err := svc.Init(micro.WithFlagSet(flag.NewFlagSet("node", flag.ContinueOnError)), micro.WithArgs([]string{})); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	pb.RegisterGreeterServer(svc.Server(), &greetertest.Server{Node: id, Hook: func(ctx context.Context, _ *pb.Request) error {
		if v := metadata.ValueFromIncomingContext(ctx, "x-fail"); len(v) > 0 {
			return status.Error(codes.FailedPrecondition, "failed as asked: "+v[0])
		}
		return nil
	}})
	var out sync.Mutex
	err := pubsub.RegisterSubscriber("events", svc, func(_ context.Context, ev *pb.Event) error {
		out.Lock()
		defer out.Unlock()
		fmt.Printf("event %s %s\n", ev.GetId(), ev.GetMessage())
		return nil
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	go func() {
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			st := healthpb.HealthCheckResponse_SERVING
			if sc.Text() == "not-serving" {
				st = healthpb.HealthCheckResponse_NOT_SERVING
			}
			svc.Health().SetServingStatus("greeter", st)
			out.Lock()
			fmt.Println("health", st)
			out.Unlock()
		}
		cancel()
	}()
	if err := svc.Run(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// node is a running node process.
type node struct {
	t     *testing.T
	id    string
	cmd   *exec.Cmd
	stdin io.WriteCloser
	mu    sync.Mutex
	out   bytes.Buffer
	done  chan struct{}
}

func startNode(t *testing.T, id string, env []string) *node {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(append(os.Environ(), env...), envNode+"="+id)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	n := &node{t: t, id: id, cmd: cmd, stdin: stdin, done: make(chan struct{})}
	go func() {
		defer close(n.done)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			n.mu.Lock()
			n.out.WriteString(sc.Text() + "\n")
			n.mu.Unlock()
		}
		cmd.Wait()
	}()
	t.Cleanup(n.stop)
	n.waitFor("ready")
	return n
}

func (n *node) output() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.out.String()
}

// waitFor waits until the node has printed s.
func (n *node) waitFor(s string) {
	n.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(n.output(), s) {
		select {
		case <-n.done:
			n.t.Fatalf("node %s exited without printing %q; it printed:\n%s", n.id, s, n.output())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			n.t.Fatalf("node %s did not print %q; it printed:\n%s", n.id, s, n.output())
		}
	}
}

func (n *node) send(line string) {
	n.t.Helper()
	if _, err := io.WriteString(n.stdin, line+"\n"); err != nil {
		n.t.Fatal(err)
	}
}

// stop ends the node gracefully (it deregisters), killing it after a
// while.
func (n *node) stop() {
	n.stdin.Close()
	select {
	case <-n.done:
	case <-time.After(30 * time.Second):
		n.cmd.Process.Kill()
		<-n.done
	}
}

// result is one finished run of the micro binary.
type result struct {
	stdout, stderr string
	code           int
}

// cli runs the micro binary with the test's registry environment.
type cli struct {
	t   *testing.T
	bin string
	env []string
}

const cliTimeout = 60 * time.Second

// run runs micro with args and stdin, and waits for it.
func (c *cli) run(stdin string, args ...string) result {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cliTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.bin, args...)
	cmd.Env = append(os.Environ(), c.env...)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		c.t.Fatalf("micro %s did not finish within %v; stdout:\n%s\nstderr:\n%s", strings.Join(args, " "), cliTimeout, stdout.String(), stderr.String())
	}
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		c.t.Fatal(err)
	}
	return result{stdout: stdout.String(), stderr: stderr.String(), code: code}
}

// ok runs micro and fails the test unless it succeeds; it returns the
// standard output.
func (c *cli) ok(stdin string, args ...string) string {
	c.t.Helper()
	r := c.run(stdin, args...)
	if r.code != 0 {
		c.t.Fatalf("micro %s: exit status %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

// fails runs micro and checks that it fails with exit status code, no
// output, and exactly one line on standard error that says every one of
// says.
func (c *cli) fails(code int, says []string, args ...string) string {
	c.t.Helper()
	r := c.run("", args...)
	line := strings.TrimSuffix(r.stderr, "\n")
	switch {
	case r.code != code:
		c.t.Errorf("micro %s: exit status %d, want %d; stderr:\n%s", strings.Join(args, " "), r.code, code, r.stderr)
	case r.stdout != "":
		c.t.Errorf("micro %s printed %q on standard output, want nothing", strings.Join(args, " "), r.stdout)
	case line == "" || strings.Contains(line, "\n"):
		c.t.Errorf("micro %s: standard error is not one line:\n%s", strings.Join(args, " "), r.stderr)
	}
	for _, s := range says {
		if !strings.Contains(line, s) {
			c.t.Errorf("micro %s: error %q does not say %q", strings.Join(args, " "), line, s)
		}
	}
	return line
}

// background is a micro process that runs until stopped (watch,
// subscribe).
type background struct {
	t    *testing.T
	args string
	cmd  *exec.Cmd
	mu   sync.Mutex
	out  bytes.Buffer
	done chan struct{}
	err  error
}

func (b *background) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.out.Write(p)
}

// start runs micro in the background. It is killed at its deadline, and
// when the test process dies (Pdeathsig), so it never outlives the test.
func (c *cli) start(args ...string) *background {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	b := &background{t: c.t, args: strings.Join(args, " "), done: make(chan struct{})}
	b.cmd = exec.CommandContext(ctx, c.bin, args...)
	b.cmd.Env = append(os.Environ(), c.env...)
	b.cmd.Stdout, b.cmd.Stderr = b, b
	b.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := b.cmd.Start(); err != nil {
		cancel()
		c.t.Fatal(err)
	}
	go func() {
		b.err = b.cmd.Wait()
		cancel()
		close(b.done)
	}()
	c.t.Cleanup(func() { b.Stop() })
	return b
}

// Output is what it printed so far, standard output and error.
func (b *background) Output() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.out.String()
}

// WaitFor waits until it has printed s.
func (b *background) WaitFor(s string) {
	b.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(b.Output(), s) {
		select {
		case <-b.done:
			if !strings.Contains(b.Output(), s) {
				b.t.Fatalf("micro %s exited (%v) without printing %q:\n%s", b.args, b.err, s, b.Output())
			}
			return
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("micro %s did not print %q:\n%s", b.args, s, b.Output())
		}
	}
}

// Stop interrupts it as Ctrl-C does (SIGINT; SIGTERM is handled alike)
// and returns how it exited; it kills it if it does not stop.
func (b *background) Stop() error {
	select {
	case <-b.done:
		return b.err
	default:
	}
	b.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-b.done:
	case <-time.After(30 * time.Second):
		b.cmd.Process.Kill()
		<-b.done
		b.t.Errorf("micro %s ignored SIGINT:\n%s", b.args, b.Output())
	}
	return b.err
}

// eventually retries check until it returns "" (done) or the time is up,
// and fails with its last complaint.
func eventually(t *testing.T, what string, check func() string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		msg := check()
		if msg == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %s", what, msg)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
