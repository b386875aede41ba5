package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/microgrpc/microgrpc/bench/internal/control"
	"github.com/microgrpc/microgrpc/micro"
	pb "github.com/microgrpc/microgrpc/proto/greeter"
	"github.com/microgrpc/microgrpc/resolver"
	"github.com/microgrpc/microgrpc/resolver/memory"
)

// buildServers builds the two server programs once per run.
var buildServers = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "microgrpc-bench-")
	if err != nil {
		return "", err
	}
	for _, p := range []string{"rawserver", "rawlimitsserver", "microserver"} {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		out, err := exec.CommandContext(ctx, "go", "build", "-o", dir+"/"+p, "./internal/"+p).CombinedOutput()
		cancel()
		if err != nil {
			return "", fmt.Errorf("go build %s: %v\n%s", p, err, out)
		}
	}
	return dir, nil
})

// child is a server process.
type child struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stdout *bufio.Reader
	addr   string
	stop   func() // ends the process and waits for it; idempotent
}

func startServer(b *testing.B, kind string) *child {
	b.Helper()
	dir, err := buildServers()
	if err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(dir + "/" + kind + "server")
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	c := &child{cmd: cmd, stdin: stdin}
	c.stop = sync.OnceFunc(func() {
		stdin.Close()
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	b.Cleanup(c.stop)
	c.stdout = bufio.NewReader(stdout)
	line, err := c.stdout.ReadString('\n')
	if err != nil {
		b.Fatalf("%s server: %v", kind, err)
	}
	c.addr = strings.TrimSpace(line)
	return c
}

// cpu returns the process's user+system CPU time, which it reports itself
// (bench/internal/control) to the microsecond; /proc counts 10 ms ticks,
// too coarse for rounds of a second.
func (c *child) cpu(b *testing.B) time.Duration {
	if _, err := io.WriteString(c.stdin, "cpu\n"); err != nil {
		b.Fatal(err)
	}
	line, err := c.stdout.ReadString('\n')
	if err != nil {
		b.Fatal(err)
	}
	ns, err := strconv.ParseInt(strings.TrimSpace(line), 10, 64)
	if err != nil {
		b.Fatalf("server cpu %q: %v", line, err)
	}
	return time.Duration(ns)
}

// peakRSS returns the process's peak resident set (VmHWM) in bytes.
func (c *child) peakRSS(b *testing.B) float64 {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", c.cmd.Process.Pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return kb * 1024
		}
	}
	b.Fatal("no VmHWM")
	return 0
}

// side is one way to call: a client and the server process behind it.
type side struct {
	client pb.GreeterClient
	server *child
	// per round
	rates, cpus, servers []float64
	rss                  float64 // the server's peak, last round
}

// tally sums slices of one side.
type tally struct {
	calls     int
	took, cpu time.Duration
	server    time.Duration // of cpu, the server process's
}

func (t *tally) add(calls int, took, cpu, server time.Duration) {
	t.calls += calls
	t.took += took
	t.cpu += cpu
	t.server += server
}

func (s *side) record(t tally) {
	s.rates = append(s.rates, float64(t.calls)/t.took.Seconds())
	s.cpus = append(s.cpus, float64(t.cpu.Microseconds())/float64(t.calls))
	s.servers = append(s.servers, float64(t.server.Microseconds())/float64(t.calls))
}

// slice makes calls for d with conc callers and returns how many, how long
// they took, the CPU both processes spent and, of it, the server's.
func (s *side) slice(b *testing.B, conc int, d time.Duration) (int, time.Duration, time.Duration, time.Duration) {
	req := &pb.Request{Name: "John"}
	cpu0, scpu0 := control.CPU(), s.server.cpu(b)
	stop := time.Now().Add(d)
	var mu sync.Mutex
	calls := 0
	var wg sync.WaitGroup
	start := time.Now()
	for range conc {
		wg.Go(func() {
			n := 0
			for time.Now().Before(stop) {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				_, err := s.client.Hello(ctx, req)
				cancel()
				if err != nil {
					b.Error(err)
					return
				}
				n++
			}
			mu.Lock()
			calls += n
			mu.Unlock()
		})
	}
	wg.Wait()
	took := time.Since(start)
	server := s.server.cpu(b) - scpu0
	return calls, took, (control.CPU() - cpu0) + server, server
}

// slicesPerRound is how many times a round switches between raw and
// micro: the machines are shared, and their load changes within a second;
// alternating every 100 ms gives both sides the same share of it.
const slicesPerRound = 10

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// BenchmarkCrossProcess is the way users run microgrpc: the greeter
// server in a process of its own, built as its own program (raw grpc-go:
// internal/rawserver, and a micro.Service with its defaults:
// internal/microserver), called over loopback from this process (raw
// grpc-go's client, and svc.Dial) with 1 and 64 concurrent callers. A
// second baseline is raw grpc-go with micro's settings
// (internal/rawlimitsserver: the server's limits, keepalive policy, stream
// workers and request memory bound; the client's keepalive), so that the
// framework's cost shows apart from what its settings cost or save.
//
// Each round starts the three server processes and their clients afresh:
// two runs of one program differ by a few percent (where its memory and
// threads land), and a pair of processes kept for the whole run would
// carry that into every round, so the median would not remove it. A
// round gives each side one second, in slices of 100 ms that rotate
// between them; -benchtime=Nx sets the rounds (at least 5). It reports
// the medians of calls/s and of CPU per call (client and server process
// together), their micro/raw ratios with the spread of the per-round
// ratios, and the median of the servers' peak RSS.
//
//	go test -run '^$' -bench CrossProcess -benchtime 15x ./bench
func BenchmarkCrossProcess(b *testing.B) {
	for _, conc := range []int{1, 64} {
		b.Run(fmt.Sprintf("c%d", conc), func(b *testing.B) {
			rounds := 0
			for b.Loop() {
				rounds++
			}
			rounds = max(rounds, 5)
			b.StopTimer()
			raw, lim, mic := &side{}, &side{}, &side{}
			var rateRatios, cpuRatios, limRateRatios, limCPURatios, rawRSS, micRSS []float64
			for i := range rounds {
				crossRound(b, i, conc, raw, lim, mic)
				rateRatios = append(rateRatios, mic.rates[i]/raw.rates[i])
				cpuRatios = append(cpuRatios, mic.cpus[i]/raw.cpus[i])
				limRateRatios = append(limRateRatios, mic.rates[i]/lim.rates[i])
				limCPURatios = append(limCPURatios, mic.cpus[i]/lim.cpus[i])
				rawRSS = append(rawRSS, raw.rss/(1<<20))
				micRSS = append(micRSS, mic.rss/(1<<20))
			}
			b.ReportMetric(median(raw.rates), "raw-calls/s")
			b.ReportMetric(median(mic.rates), "micro-calls/s")
			b.ReportMetric(median(raw.cpus), "raw-cpu-µs/call")
			b.ReportMetric(median(mic.cpus), "micro-cpu-µs/call")
			b.ReportMetric(median(raw.servers), "raw-server-cpu-µs/call")
			b.ReportMetric(median(mic.servers), "micro-server-cpu-µs/call")
			b.ReportMetric(median(rateRatios), "calls-micro/raw")
			b.ReportMetric(median(cpuRatios), "cpu-micro/raw")
			b.ReportMetric(median(limRateRatios), "calls-micro/raw+settings")
			b.ReportMetric(median(limCPURatios), "cpu-micro/raw+settings")
			b.ReportMetric(median(rawRSS), "raw-server-peak-MiB")
			b.ReportMetric(median(micRSS), "micro-server-peak-MiB")
			slices.Sort(rateRatios)
			slices.Sort(cpuRatios)
			fmt.Fprintf(os.Stderr, "c%d, %d rounds: calls micro/raw median %.3f (%.3f..%.3f), cpu/call micro/raw median %.3f (%.3f..%.3f) [µs/call client+server raw %.1f+%.1f, micro %.1f+%.1f]; server peak RSS raw %.1f MiB, micro %.1f MiB (%.2fx)\n",
				conc, rounds, median(rateRatios), rateRatios[0], rateRatios[len(rateRatios)-1],
				median(cpuRatios), cpuRatios[0], cpuRatios[len(cpuRatios)-1],
				median(raw.cpus)-median(raw.servers), median(raw.servers), median(mic.cpus)-median(mic.servers), median(mic.servers),
				median(rawRSS), median(micRSS), median(micRSS)/median(rawRSS))
			fmt.Fprintf(os.Stderr, "c%d, against raw grpc-go with micro's settings (limits, keepalive, stream workers, request memory): calls median %.3f, cpu/call median %.3f [µs/call client+server %.1f+%.1f]\n",
				conc, median(limRateRatios), median(limCPURatios), median(lim.cpus)-median(lim.servers), median(lim.servers))
		})
	}
}

// crossRound runs round i of BenchmarkCrossProcess on server processes
// and clients of its own, and records it in the three sides.
func crossRound(b *testing.B, i, conc int, raw, lim, mic *side) {
	raw.server, lim.server, mic.server = startServer(b, "raw"), startServer(b, "rawlimits"), startServer(b, "micro")
	defer raw.server.stop()
	defer lim.server.stop()
	defer mic.server.stop()
	rawCC, err := grpc.NewClient("passthrough:///"+raw.server.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	defer rawCC.Close()
	// The second baseline: raw grpc-go with micro's settings (the server's
	// limits, keepalive policy, stream workers and request memory bound,
	// the client's keepalive).
	limCC, err := grpc.NewClient("passthrough:///"+lim.server.addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithKeepaliveParams(micro.DefaultClientKeepalive()))
	if err != nil {
		b.Fatal(err)
	}
	defer limCC.Close()
	// The micro client finds the server process through a registry of its
	// own that holds the server's node, as if it had registered there.
	reg := memory.NewRegistry()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := reg.Register(ctx, &resolver.Service{Name: "greeter",
		Nodes: []resolver.Node{{ID: "micro", Address: mic.server.addr, HealthService: "greeter"}}}); err != nil {
		b.Fatal(err)
	}
	client := micro.NewService(micro.WithName("bench-client"), micro.WithRegistry(reg), micro.WithLogger(slog.New(slog.DiscardHandler)))
	defer client.Close()
	raw.client, lim.client, mic.client = pb.NewGreeterClient(rawCC), pb.NewGreeterClient(limCC), pb.NewGreeterClient(client.Dial("greeter"))
	sides := []*side{raw, lim, mic}
	for _, s := range sides { // warm: connections, first calls
		s.slice(b, conc, 200*time.Millisecond)
	}
	tallies := make([]tally, len(sides))
	for j := range slicesPerRound {
		for k := range sides {
			// Each slice in another order.
			at := (k + i + j) % len(sides)
			tallies[at].add(sides[at].slice(b, conc, time.Second/slicesPerRound))
		}
	}
	for k, s := range sides {
		s.record(tallies[k])
		s.rss = s.server.peakRSS(b)
	}
}
