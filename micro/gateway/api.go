package gateway

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// serveAPI serves JSON by name: POST /api/{service}/{method}, the method
// named as micro call takes it (Greeter.Hello, greeter.Greeter/Hello).
// Unary methods answer with one JSON document; streaming methods take
// newline-delimited JSON requests in the body and answer with one JSON
// line per response (application/x-ndjson), an error ending the stream as
// a last line {"error":{...}}.
func (g *Gateway) serveAPI(w http.ResponseWriter, r *http.Request) {
	rest := strings.TrimPrefix(r.URL.Path, "/api/")
	name, method, ok := strings.Cut(rest, "/")
	if !ok || name == "" || method == "" {
		writeError(w, status.Errorf(codes.NotFound, "gateway: %s: want /api/{service}/{method}, e.g. /api/greeter/Greeter.Hello", r.URL.Path), 0)
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeError(w, status.Errorf(codes.InvalidArgument, "gateway: %s %s: JSON by name takes POST", r.Method, r.URL.Path), http.StatusMethodNotAllowed)
		return
	}
	ctx, cancel, b, ok := g.begin(w, r, name)
	if !ok {
		return
	}
	defer cancel()
	body, err := io.ReadAll(r.Body)
	if err != nil {
		writeBodyError(w, err)
		return
	}
	dyn := b.client()
	md, err := dyn.Method(ctx, method)
	if err != nil {
		writeError(w, serviceErr(name, err), 0)
		return
	}
	if md.IsStreamingClient() || md.IsStreamingServer() {
		g.serveAPIStream(ctx, w, b, method, body)
		return
	}
	if len(bytes.TrimSpace(body)) == 0 {
		body = []byte("{}")
	}
	var p peer.Peer
	rsp, err := dyn.InvokeJSON(ctx, method, body, grpc.Peer(&p))
	if err != nil {
		writeError(w, serviceErr(name, err), 0)
		return
	}
	g.setNode(ctx, w.Header(), name, &p)
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(append(rsp, '\n'))
}

// serveAPIStream sends every line of body as a request, then writes the
// responses as they come, one per line.
func (g *Gateway) serveAPIStream(ctx context.Context, w http.ResponseWriter, b *backend, method string, body []byte) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := b.client().NewStream(ctx, method)
	if err != nil {
		writeError(w, serviceErr(b.name, err), 0)
		return
	}
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(nil, len(body)+1)
	sent := 0
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		if sent > 0 && !st.Method().IsStreamingClient() {
			writeError(w, status.Errorf(codes.InvalidArgument, "gateway: %s takes one request, the body has more", method), 0)
			return
		}
		if err := st.SendJSON(line); err != nil && !errors.Is(err, io.EOF) {
			writeError(w, serviceErr(b.name, err), 0)
			return
		}
		sent++
	}
	if sent == 0 && !st.Method().IsStreamingClient() {
		if err := st.SendJSON([]byte("{}")); err != nil && !errors.Is(err, io.EOF) {
			writeError(w, serviceErr(b.name, err), 0)
			return
		}
	}
	_ = st.CloseSend()
	first, err := st.RecvJSON()
	if err != nil && !errors.Is(err, io.EOF) {
		// Nothing was written yet: the error is the answer's status.
		writeError(w, serviceErr(b.name, err), 0)
		return
	}
	if p, ok := peer.FromContext(st.Context()); ok {
		g.setNode(ctx, w.Header(), b.name, p)
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	flush := func() {
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
		}
	}
	for msg := first; err == nil; msg, err = st.RecvJSON() {
		_, _ = w.Write(append(msg, '\n'))
		flush()
	}
	if !errors.Is(err, io.EOF) {
		s := toStatus(serviceErr(b.name, err))
		_, _ = fmt.Fprintf(w, `{"error":{"code":%q,"message":%s}}`+"\n", codeName(s.Code()), strconv.Quote(s.Message()))
		flush()
	}
}

// writeBodyError answers a body that could not be read: 413 when it was
// too large.
func writeBodyError(w http.ResponseWriter, err error) {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		writeError(w, status.Errorf(codes.ResourceExhausted, "gateway: the request body is over the limit of %d bytes", mbe.Limit), http.StatusRequestEntityTooLarge)
		return
	}
	writeError(w, status.Errorf(codes.InvalidArgument, "gateway: read the request body: %v", err), 0)
}

// serviceErr names the service in the errors that do not (reflection
// missing, the call's own failure to find a node).
func serviceErr(name string, err error) error {
	st := toStatus(err)
	msg := strings.TrimPrefix(st.Message(), "dynamic: ")
	if !strings.Contains(msg, strconv.Quote(name)) {
		msg = fmt.Sprintf("service %q: %s", name, msg)
	}
	return status.Error(st.Code(), msg)
}

// begin starts serving a call of a registry service: the call's context
// and the service's backend, or false once the error is answered.
func (g *Gateway) begin(w http.ResponseWriter, r *http.Request, name string) (context.Context, context.CancelFunc, *backend, bool) {
	ctx, cancel, err := g.callContext(r)
	if err != nil {
		writeError(w, err, 0)
		return nil, nil, nil, false
	}
	b, err := g.backend(ctx, name)
	if err != nil {
		cancel()
		writeError(w, err, 0)
		return nil, nil, nil, false
	}
	return ctx, cancel, b, true
}

// callContext is the request's context with the call's deadline and the
// allowed headers as outgoing metadata.
func (g *Gateway) callContext(r *http.Request) (context.Context, context.CancelFunc, error) {
	d, ok, err := requestTimeout(r.Header)
	if err != nil {
		return nil, nil, err
	}
	ctx := r.Context()
	if md := g.metadata(r.Header); len(md) > 0 {
		ctx = metadata.NewOutgoingContext(ctx, md)
	}
	if !ok {
		d = g.opts.timeout
	}
	if d <= 0 {
		ctx, cancel := context.WithCancel(ctx)
		return ctx, cancel, nil
	}
	ctx, cancel := context.WithTimeout(ctx, d)
	return ctx, cancel, nil
}

// metadata is the allowed headers of h, as gRPC metadata.
func (g *Gateway) metadata(h http.Header) metadata.MD {
	var md metadata.MD
	for k, vs := range h {
		if g.opts.allowedHeader(k) {
			if md == nil {
				md = metadata.MD{}
			}
			md[strings.ToLower(k)] = append(md[strings.ToLower(k)], vs...)
		}
	}
	return md
}

// requestTimeout reads a call's deadline from Connect-Timeout-Ms or
// grpc-timeout.
func requestTimeout(h http.Header) (time.Duration, bool, error) {
	if v := h.Get("Connect-Timeout-Ms"); v != "" {
		ms, err := strconv.ParseInt(v, 10, 64)
		if err != nil || ms < 0 || len(v) > 10 {
			return 0, false, status.Errorf(codes.InvalidArgument, "gateway: Connect-Timeout-Ms %q: want at most 10 digits", v)
		}
		return time.Duration(ms) * time.Millisecond, true, nil
	}
	v := h.Get("Grpc-Timeout")
	if v == "" {
		return 0, false, nil
	}
	d, err := parseGRPCTimeout(v)
	if err != nil {
		return 0, false, status.Errorf(codes.InvalidArgument, "gateway: grpc-timeout %q: %v", v, err)
	}
	return d, true, nil
}

// parseGRPCTimeout reads gRPC's TimeoutValue TimeoutUnit: at most 8
// digits and one of H M S m u n.
func parseGRPCTimeout(v string) (time.Duration, error) {
	if len(v) < 2 || len(v) > 9 {
		return 0, errors.New("want 1 to 8 digits and a unit (H, M, S, m, u, n)")
	}
	n, err := strconv.ParseInt(v[:len(v)-1], 10, 64)
	if err != nil || n < 0 {
		return 0, errors.New("want 1 to 8 digits and a unit (H, M, S, m, u, n)")
	}
	unit := map[byte]time.Duration{'H': time.Hour, 'M': time.Minute, 'S': time.Second, 'm': time.Millisecond, 'u': time.Microsecond, 'n': time.Nanosecond}[v[len(v)-1]]
	if unit == 0 {
		return 0, fmt.Errorf("unknown unit %q", v[len(v)-1:])
	}
	return time.Duration(n) * unit, nil
}

// setNode names the node that served a call, from its peer's address.
func (g *Gateway) setNode(ctx context.Context, h http.Header, service string, p *peer.Peer) {
	if p == nil || p.Addr == nil {
		return
	}
	addr := p.Addr.String()
	h.Set(NodeAddressHeader, addr)
	if id := g.state.nodeAt(ctx, service, addr); id != "" {
		h.Set(NodeHeader, id)
	}
}
