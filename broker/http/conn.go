package http

import (
	"net"
	"runtime"
	"sync"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
)

// frameWriter writes frames to a connection with group commit: a frame is
// appended to a buffer, and whoever finds no write in progress writes the
// buffer, and keeps writing what others appended meanwhile. Concurrent
// senders thus share socket writes, and a lone sender writes at once. A
// write error is kept: every later write fails with it.
type frameWriter struct {
	conn    net.Conn
	timeout time.Duration // bounds one socket write

	mu      sync.Mutex
	buf     []byte // frames not yet written
	spare   []byte
	writing bool
	err     error
}

// write frames a payload of size bytes that fill appends, and sends it
// (or leaves it to the write in progress). A nil error means the frame
// was written or handed to the writer in progress, not that it arrived.
func (w *frameWriter) write(seq uint64, size int, fill func([]byte) []byte) error {
	w.mu.Lock()
	if w.err != nil {
		err := w.err
		w.mu.Unlock()
		return err
	}
	w.buf = protowire.AppendVarint(w.buf, seq)
	w.buf = protowire.AppendVarint(w.buf, uint64(size))
	w.buf = fill(w.buf)
	if w.writing {
		w.mu.Unlock()
		return nil
	}
	w.writing = true
	// Let the goroutines that are ready to send add their frames first:
	// a socket write costs far more than a yield, and sharing one is the
	// point.
	w.mu.Unlock()
	runtime.Gosched()
	w.mu.Lock()
	var err error
	for len(w.buf) > 0 && err == nil {
		out := w.buf
		w.buf = w.spare[:0]
		w.mu.Unlock()
		w.conn.SetWriteDeadline(time.Now().Add(w.timeout))
		_, err = w.conn.Write(out)
		w.mu.Lock()
		if cap(out) <= 1<<20 {
			w.spare = out[:0]
		}
	}
	if err != nil {
		w.err = err
		w.buf = nil
	}
	w.writing = false
	w.mu.Unlock()
	return err
}
