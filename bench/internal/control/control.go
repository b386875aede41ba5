// Package control is how bench.BenchmarkCrossProcess talks to its server
// processes: over their standard input and output, one line each way.
package control

import (
	"bufio"
	"fmt"
	"io"
	"syscall"
	"time"
)

// Serve answers the benchmark until in closes: to "cpu" it writes the
// process's user+system CPU time in nanoseconds (from getrusage, to the
// microsecond, where /proc counts 10 ms ticks).
func Serve(in io.Reader, out io.Writer) {
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		if sc.Text() == "cpu" {
			fmt.Fprintln(out, CPU().Nanoseconds())
		}
	}
}

// CPU returns the calling process's user+system CPU time.
func CPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
