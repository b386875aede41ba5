package jetstream_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	natsgo "github.com/nats-io/nats.go"
	rawjs "github.com/nats-io/nats.go/jetstream"

	"github.com/microgrpc/microgrpc/broker"
	"github.com/microgrpc/microgrpc/broker/jetstream"
	"github.com/microgrpc/microgrpc/plugins"
	_ "github.com/microgrpc/microgrpc/plugins/nats" // the nats and jetstream plugins, as a service links them
)

// The cluster tests run every part in an OS process of its own (this
// test binary again, told its role by the environment): three NATS
// servers clustered over routes on 127.0.0.1, each with JetStream storing
// in files of its own, subscribers and a publisher that reach them through
// the broker plugins as a service does (--broker_address with the three
// URLs, --broker_replicas=3). A server is killed with SIGKILL, so that it
// stops as a crashed machine does, and started again on its ports and
// files.
const (
	envRole     = "MICRO_JETSTREAM_TEST_ROLE" // natsd, cluster-sub, cluster-pub
	envKind     = "MICRO_JETSTREAM_TEST_KIND" // the broker plugin: jetstream or nats
	envCount    = "MICRO_JETSTREAM_TEST_COUNT"
	envNatsName = "MICRO_JETSTREAM_TEST_NATS_NAME"
	envNatsPort = "MICRO_JETSTREAM_TEST_NATS_PORT"
	envNatsCl   = "MICRO_JETSTREAM_TEST_NATS_CLUSTER_PORT"
	envNatsDir  = "MICRO_JETSTREAM_TEST_NATS_DIR"
	envRoutes   = "MICRO_JETSTREAM_TEST_NATS_ROUTES"
)

// clusterHelper runs a helper process's role and returns its exit code.
func clusterHelper(role string) int {
	slog.SetDefault(slog.New(slog.DiscardHandler)) // reconnects are expected
	switch role {
	case "natsd":
		return natsdProcess()
	case "cluster-sub":
		return clusterSubscriber()
	case "cluster-pub":
		return clusterPublisher()
	}
	fmt.Fprintln(os.Stderr, "unknown role", role)
	return 2
}

// natsdProcess is one cluster member, until its standard input closes or
// it is killed.
func natsdProcess() int {
	port, _ := strconv.Atoi(os.Getenv(envNatsPort))
	cport, _ := strconv.Atoi(os.Getenv(envNatsCl))
	s, err := server.NewServer(&server.Options{
		ServerName: os.Getenv(envNatsName), Host: "127.0.0.1", Port: port, NoLog: true, NoSigs: true,
		JetStream: true, StoreDir: os.Getenv(envNatsDir),
		Cluster: server.ClusterOpts{Name: "microgrpc-test", Host: "127.0.0.1", Port: cport},
		Routes:  server.RoutesFromStr(os.Getenv(envRoutes)),
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	go s.Start()
	if !s.ReadyForConnections(20 * time.Second) {
		fmt.Fprintln(os.Stderr, "nats server not ready")
		return 1
	}
	fmt.Println("ready")
	io.Copy(io.Discard, os.Stdin)
	s.Shutdown()
	s.WaitForShutdown()
	return 0
}

// pluginBroker makes the broker as a service would, from the plugin named
// by the environment, with the cluster's URLs and 3 replicas.
func pluginBroker() (broker.Broker, error) {
	return plugins.NewBroker(os.Getenv(envKind), plugins.BrokerOptions{Addrs: strings.Split(os.Getenv(envURL), ","), Replicas: 3})
}

// clusterSubscriber is a queue member that prints "handled <body>" for
// each message before it acknowledges it, until its standard input
// closes.
func clusterSubscriber() int {
	b, err := pluginBroker()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := b.Connect(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	var mu sync.Mutex
	out := bufio.NewWriter(os.Stdout)
	_, err = b.Subscribe(os.Getenv(envTopic), func(_ context.Context, e broker.Event) error {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(out, "handled %s\n", e.Message().Body)
		return out.Flush()
	}, broker.Queue(os.Getenv(envQueue)), broker.SubscriberName(os.Getenv(envName)))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println("ready")
	go func() {
		io.Copy(io.Discard, os.Stdin)
		cancel()
	}()
	<-ctx.Done()
	dctx, dcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer dcancel()
	b.Disconnect(dctx)
	return 0
}

// clusterPublisher publishes count messages from 8 goroutines, paced, and
// prints "acked <body>" for each Publish that returned nil and "failed
// <body>" for the others, then exits.
func clusterPublisher() int {
	b, err := pluginBroker()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := b.Connect(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	n, _ := strconv.Atoi(os.Getenv(envCount))
	topic := os.Getenv(envTopic)
	var mu sync.Mutex
	out := bufio.NewWriter(os.Stdout)
	var wg sync.WaitGroup
	const workers = 8
	for w := range workers {
		wg.Go(func() {
			for i := w; i < n; i += workers {
				body := fmt.Sprint("c", i)
				pctx, pcancel := context.WithTimeout(ctx, 5*time.Second)
				err := b.Publish(pctx, topic, &broker.Message{Body: []byte(body)})
				pcancel()
				mu.Lock()
				if err != nil {
					fmt.Fprintf(out, "failed %s\n", body)
				} else {
					fmt.Fprintf(out, "acked %s\n", body)
				}
				out.Flush()
				mu.Unlock()
				time.Sleep(5 * time.Millisecond)
			}
		})
	}
	wg.Wait()
	dctx, dcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer dcancel()
	b.Disconnect(dctx)
	return 0
}

// proc is a helper process (this test binary in a role); lines gets each
// line of its output but "ready".
type proc struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	ready chan struct{}
	done  chan struct{}
}

func startProc(t *testing.T, role string, lines func(string), env ...string) *proc {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), env...)
	if role != "" {
		cmd.Env = append(cmd.Env, envRole+"="+role)
	}
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
	p := &proc{cmd: cmd, stdin: stdin, ready: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		sc := bufio.NewScanner(stdout)
		readyOnce := sync.OnceFunc(func() { close(p.ready) })
		for sc.Scan() {
			if line := sc.Text(); line == "ready" {
				readyOnce()
			} else if lines != nil {
				lines(line)
			}
		}
		cmd.Wait()
	}()
	t.Cleanup(p.stop)
	return p
}

func (p *proc) waitReady(t *testing.T, what string) {
	t.Helper()
	timer := time.NewTimer(defaultTestTimeout)
	defer timer.Stop()
	select {
	case <-p.ready:
	case <-p.done:
		t.Fatalf("%s exited before it was ready", what)
	case <-timer.C:
		t.Fatalf("%s not ready after %v", what, defaultTestTimeout)
	}
}

// stop ends the process gracefully (closing its stdin), or kills it
// after a while; it is idempotent.
func (p *proc) stop() {
	p.stdin.Close()
	timer := time.NewTimer(15 * time.Second)
	defer timer.Stop()
	select {
	case <-p.done:
	case <-timer.C:
		p.cmd.Process.Kill()
		<-p.done
	}
}

func (p *proc) kill() {
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// cluster is three NATS servers in processes of their own.
type cluster struct {
	t      *testing.T
	ports  [3]int
	cports [3]int
	dirs   [3]string
	procs  [3]*proc
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func startCluster(t *testing.T) *cluster {
	c := &cluster{t: t}
	for i := range 3 {
		c.ports[i], c.cports[i], c.dirs[i] = freePort(t), freePort(t), t.TempDir()
	}
	for i := range 3 {
		c.start(i)
	}
	for i := range 3 {
		c.procs[i].waitReady(t, fmt.Sprint("nats server n", i))
	}
	c.waitHealthy()
	return c
}

// waitHealthy waits until the cluster can place a stream of 3 replicas:
// all three servers are up and know of one another.
func (c *cluster) waitHealthy() {
	c.t.Helper()
	nc, js := c.client()
	defer nc.Close()
	deadline := time.Now().Add(defaultTestTimeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := js.CreateOrUpdateStream(ctx, rawjs.StreamConfig{Name: "PROBE", Subjects: []string{"probe"}, Replicas: 3})
		if err == nil {
			err = js.DeleteStream(ctx, "PROBE")
		}
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("the cluster cannot place a 3-replica stream after %v: %v", defaultTestTimeout, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (c *cluster) start(i int) {
	var routes []string
	for j := range 3 {
		if j != i {
			routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", c.cports[j]))
		}
	}
	c.procs[i] = startProc(c.t, "natsd", nil, envNatsName+"=n"+strconv.Itoa(i), envNatsPort+"="+strconv.Itoa(c.ports[i]),
		envNatsCl+"="+strconv.Itoa(c.cports[i]), envNatsDir+"="+c.dirs[i], envRoutes+"="+strings.Join(routes, ","))
}

// urls is what --broker_address says.
func (c *cluster) urls() string {
	var u []string
	for _, p := range c.ports {
		u = append(u, fmt.Sprintf("nats://127.0.0.1:%d", p))
	}
	return strings.Join(u, ",")
}

func (c *cluster) client() (*natsgo.Conn, rawjs.JetStream) {
	c.t.Helper()
	nc, err := natsgo.Connect(c.urls(), natsgo.MaxReconnects(-1))
	if err != nil {
		c.t.Fatal(err)
	}
	js, err := rawjs.New(nc)
	if err != nil {
		c.t.Fatal(err)
	}
	return nc, js
}

// leader is the index of the server that leads stream.
func (c *cluster) leader(stream string) int {
	c.t.Helper()
	nc, js := c.client()
	defer nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), defaultTestTimeout)
	defer cancel()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		c.t.Fatal(err)
	}
	info := s.CachedInfo()
	if info.Config.Replicas != 3 || info.Cluster == nil || !strings.HasPrefix(info.Cluster.Leader, "n") {
		c.t.Fatalf("stream %s: %d replicas, cluster %+v; want 3 replicas and a leader", stream, info.Config.Replicas, info.Cluster)
	}
	i, _ := strconv.Atoi(info.Cluster.Leader[1:])
	return i
}

// tally is what the helper processes printed.
type tally struct {
	mu       sync.Mutex
	acked    []string
	failed   int
	handled  map[string]int
	killed   time.Time // set by the test
	resumed  time.Time // the first acknowledgement after a failure after the kill
	failing  bool
	lastFail time.Time
}

func (ta *tally) line(l string) {
	ta.mu.Lock()
	defer ta.mu.Unlock()
	switch verb, body, _ := strings.Cut(l, " "); verb {
	case "acked":
		ta.acked = append(ta.acked, body)
		if ta.failing && ta.resumed.IsZero() {
			ta.resumed = time.Now()
		}
	case "failed":
		ta.failed++
		ta.lastFail = time.Now()
		if !ta.killed.IsZero() {
			ta.failing = true
		}
	case "handled":
		ta.handled[body]++
	}
}

func (ta *tally) nAcked() int {
	ta.mu.Lock()
	defer ta.mu.Unlock()
	return len(ta.acked)
}

// missing is the acknowledged messages not handled yet.
func (ta *tally) missing() []string {
	ta.mu.Lock()
	defer ta.mu.Unlock()
	var out []string
	for _, b := range ta.acked {
		if ta.handled[b] == 0 {
			out = append(out, b)
		}
	}
	return out
}

func (ta *tally) duplicates() int {
	ta.mu.Lock()
	defer ta.mu.Unlock()
	d := 0
	for _, c := range ta.handled {
		d += max(c-1, 0)
	}
	return d
}

// A 3-replica stream on a cluster of three: its leader server killed with
// SIGKILL mid-stream and started again a little later, alone or together
// with one of the two subscriber processes. Every message whose Publish
// returned nil is handled at least once, by processes that carried on
// through the other servers by themselves; duplicates are counted. Then
// core NATS on the same cluster, whose promise is at most once: the loss
// is measured, not failed.
func TestClusterServerKilled(t *testing.T) {
	c := startCluster(t)
	run := token()
	for _, tc := range []struct {
		name      string
		kind      string
		killSub   bool
		mustAll   bool
		stream    bool
		published int
	}{
		{"JetStreamLeaderKilled", jetstream.Name, false, true, true, 600},
		{"JetStreamLeaderAndSubscriberKilled", jetstream.Name, true, true, true, 600},
		{"CoreNATSServerKilled", "nats", false, false, false, 600},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c.waitHealthy() // the server killed last is back
			topic := "cluster-" + strings.ToLower(tc.name) + "-" + run
			ta := &tally{handled: map[string]int{}}
			env := []string{envKind + "=" + tc.kind, envURL + "=" + c.urls(), envTopic + "=" + topic, envQueue + "=workers", envName + "=cluster-svc"}
			var subs []*proc
			for i := range 2 {
				p := startProc(t, "cluster-sub", ta.line, env...)
				p.waitReady(t, fmt.Sprint("subscriber ", i))
				subs = append(subs, p)
			}
			victim := 0 // core NATS: any server has clients
			if tc.stream {
				victim = c.leader(jetstream.DefaultStreamPrefix + "_" + topic)
			}
			start := time.Now()
			pub := startProc(t, "cluster-pub", ta.line, append(env, envCount+"="+strconv.Itoa(tc.published))...)
			deadline := time.Now().Add(defaultTestTimeout)
			for ta.nAcked() < tc.published/4 {
				if time.Now().After(deadline) {
					t.Fatalf("only %d publishes acknowledged before the kill", ta.nAcked())
				}
				time.Sleep(5 * time.Millisecond)
			}
			atKill := ta.nAcked()
			c.procs[victim].kill()
			if tc.killSub {
				subs[0].kill()
			}
			killed := time.Now()
			ta.mu.Lock()
			ta.killed = killed
			ta.mu.Unlock()
			time.Sleep(2 * time.Second)
			c.start(victim)
			c.procs[victim].waitReady(t, "the restarted server")
			select {
			case <-pub.done:
			case <-time.After(60 * time.Second):
				t.Fatal("the publisher did not finish within 60s")
			}
			afterKill := ta.nAcked() - atKill
			if afterKill < tc.published/4 {
				t.Errorf("only %d publishes acknowledged after the kill: the publisher did not carry on", afterKill)
			}
			// Everything acknowledged reaches the subscribers, within the
			// ack wait for what a killed subscriber held.
			wait := time.Now().Add(defaultTestTimeout)
			if !tc.mustAll {
				wait = time.Now().Add(3 * time.Second) // what is lost stays lost
			}
			for len(ta.missing()) > 0 && time.Now().Before(wait) {
				time.Sleep(20 * time.Millisecond)
			}
			missing := ta.missing()
			ta.mu.Lock()
			acked, failed := len(ta.acked), ta.failed
			ta.mu.Unlock()
			dups := ta.duplicates()
			ta.mu.Lock()
			if !ta.resumed.IsZero() {
				t.Logf("publishes failed from the kill until %v after it; the last failure %v after it",
					ta.resumed.Sub(killed).Round(time.Millisecond), ta.lastFail.Sub(killed).Round(time.Millisecond))
			}
			ta.mu.Unlock()
			t.Logf("%s: %d published, %d acknowledged (%d after the kill), %d failed; %d of the acknowledged never handled (%.2f%%); %d handled twice or more; server n%d killed %v after the start, back 2s later; all done %v after the kill",
				tc.kind, tc.published, acked, afterKill, failed, len(missing), 100*float64(len(missing))/float64(max(acked, 1)), dups,
				victim, killed.Sub(start).Round(time.Millisecond), time.Since(killed).Round(time.Millisecond))
			if tc.mustAll && len(missing) > 0 {
				t.Fatalf("%d acknowledged messages never handled, e.g. %v", len(missing), missing[:min(5, len(missing))])
			}
			for _, p := range subs {
				p.stop()
			}
		})
	}
}
