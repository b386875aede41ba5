package http

import (
	"bufio"
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/microgrpc/microgrpc/broker"
)

// serveStream takes a publisher's connection: it upgrades the request to
// the delivery protocol and reads deliveries until the connection ends,
// answering each with its result as soon as its handler returns.
func (b *httpBroker) serveStream(w http.ResponseWriter, r *http.Request) {
	if !b.authorized(r) {
		b.opts.logger.Warn("http broker: refused a publisher without the broker token", "remote", r.RemoteAddr)
		w.Header().Set("WWW-Authenticate", "Bearer")
		http.Error(w, "broker token required", http.StatusUnauthorized)
		return
	}
	if !strings.EqualFold(r.Header.Get("Upgrade"), upgradeProtocol) {
		w.Header().Set("Upgrade", upgradeProtocol)
		http.Error(w, "this endpoint speaks "+upgradeProtocol+" only", http.StatusUpgradeRequired)
		return
	}
	b.mu.Lock()
	closed := b.closed
	if !closed {
		b.wg.Add(1)
	}
	b.mu.Unlock()
	if closed {
		http.Error(w, "broker closed", http.StatusServiceUnavailable)
		return
	}
	defer b.wg.Done()
	nc, rw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		http.Error(w, "cannot take over the connection: "+err.Error(), http.StatusInternalServerError)
		return
	}
	// The server's read deadline was for the upgrade request; deliveries
	// on this connection have timeouts of their own.
	nc.SetDeadline(time.Time{})
	if _, err := io.WriteString(nc, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: "+upgradeProtocol+"\r\n\r\n"); err != nil {
		nc.Close()
		return
	}
	st := &stream{b: b, nc: nc, fw: frameWriter{conn: nc, timeout: b.opts.requestTimeout}}
	st.ctx, st.cancel = context.WithCancel(b.ctx)
	if !b.addStream(st) {
		nc.Close()
		return
	}
	defer b.removeStream(st)
	// read returns only when the connection ends, always with an error.
	if err := st.read(rw.Reader); !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && st.ctx.Err() == nil {
		b.opts.logger.Warn("http broker: delivery connection broke", "remote", nc.RemoteAddr().String(), "error", err)
	}
}

// stream is a publisher's connection, seen from the subscriber side.
type stream struct {
	b      *httpBroker
	nc     net.Conn
	fw     frameWriter
	ctx    context.Context // handlers' context: ends with the connection
	cancel context.CancelFunc
}

func (b *httpBroker) addStream(st *stream) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return false
	}
	b.streams[st] = struct{}{}
	return true
}

func (b *httpBroker) removeStream(st *stream) {
	b.mu.Lock()
	delete(b.streams, st)
	b.mu.Unlock()
	st.close()
}

func (st *stream) close() {
	st.cancel()
	st.nc.Close()
}

// read reads deliveries and hands each to its subscription.
func (st *stream) read(rd *bufio.Reader) error {
	limit := uint64(st.b.opts.maxSize) + frameSlack
	for {
		seq, n, err := readFrameHeader(rd)
		if err != nil {
			return err
		}
		if n > limit {
			// Skipped without holding it in memory; the sender hears why.
			if _, err := io.CopyN(io.Discard, rd, int64(n)); err != nil {
				return err
			}
			st.reply(seq, result{code: codeTooLarge, err: fmt.Sprintf("%s: frame of %d bytes, limit %d", broker.ErrMessageTooLarge, n, limit)})
			continue
		}
		buf := make([]byte, n)
		if _, err := io.ReadFull(rd, buf); err != nil {
			return err
		}
		d, err := decodeDelivery(buf)
		if err != nil {
			return fmt.Errorf("frame %d: %w", seq, err)
		}
		st.b.mu.Lock()
		s := st.b.subs[d.sub]
		st.b.mu.Unlock()
		if s == nil {
			st.reply(seq, result{code: codeGone, err: "no such subscription"})
			continue
		}
		s.take(st.ctx, d, func(r result) { st.reply(seq, r) })
	}
}

// frameSlack is what a delivery frame may carry on top of the message
// (subscription id, topic, framing).
const frameSlack = 64 << 10

func (st *stream) reply(seq uint64, r result) {
	if err := st.fw.write(seq, resultSize(r), func(b []byte) []byte { return appendResult(b, r) }); err != nil {
		st.nc.Close() // the reader ends, and the publisher's deliveries fail
	}
}

// authorized reports whether r carries the broker token, when one is set.
// The comparison takes the same time whatever the token sent.
func (b *httpBroker) authorized(r *http.Request) bool {
	if b.opts.token == "" {
		return true
	}
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return ok && subtle.ConstantTimeCompare([]byte(got), []byte(b.opts.token)) == 1
}
