package gateway

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	bytescodec "github.com/microgrpc/microgrpc/codec/bytes"
	"github.com/microgrpc/microgrpc/micro"
	"github.com/microgrpc/microgrpc/micro/dynamic"
	"github.com/microgrpc/microgrpc/resolver"
)

// Response headers naming the node that served a call.
const (
	NodeHeader        = "Micro-Node"
	NodeAddressHeader = "Micro-Node-Address"
)

// Gateway is an http.Handler serving every service of a registry; see the
// package doc for its routes. Close it to stop its registry and health
// watches.
type Gateway struct {
	svc   *micro.Service
	reg   resolver.Registry
	opts  options
	state *state
	// proxy is the in-process gRPC server vanguard hands requests to,
	// transcoded to gRPC; its one handler forwards them (proxy.go).
	proxy *grpc.Server

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex
	backends map[string]*backend // by registry service name
	closed   bool
}

// New returns a gateway to the services of svc's registry, calling them
// through svc.Dial (its resolver, balancer, retries, TLS and client
// interceptors). svc is typically a client-only service: made, Init-ed,
// never Run. The gateway does not close it.
func New(svc *micro.Service, opts ...Option) (*Gateway, error) {
	o := defaultOptions()
	for _, opt := range opts {
		opt(&o)
	}
	if o.bodyLimit <= 0 {
		return nil, fmt.Errorf("gateway: body limit %d: want > 0", o.bodyLimit)
	}
	reg, err := svc.Registry()
	if err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	g := &Gateway{svc: svc, reg: reg, opts: o, ctx: ctx, cancel: cancel, backends: map[string]*backend{}}
	g.proxy = grpc.NewServer(grpc.UnknownServiceHandler(g.forward), grpc.ForceServerCodecV2(bytescodec.Codec()))
	g.state = newState(g)
	g.wg.Go(func() { g.state.run(ctx) })
	return g, nil
}

// Close stops the gateway's watches and waits for them. Requests still
// being served fail. It is idempotent.
func (g *Gateway) Close() error {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return nil
	}
	g.closed = true
	g.mu.Unlock()
	g.cancel()
	g.proxy.Stop()
	g.wg.Wait()
	return nil
}

// backend is what the gateway knows of one registry service: its
// connection, and the types learned from it by reflection.
type backend struct {
	name string
	cc   *grpc.ClientConn

	mu  sync.Mutex
	dyn *dynamic.Client
	// transcoder is built once per dyn from its descriptors (rpc.go).
	transcoder http.Handler
}

// client returns the backend's reflection client.
func (b *backend) client() *dynamic.Client {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.dyn
}

// forget drops what was learned, so that the next call learns the types
// again: a new node may run a new version.
func (b *backend) forget() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.dyn = dynamic.NewClient(b.cc)
	b.transcoder = nil
}

// backend returns the backend of a registry service, or a NotFound error
// when the registry has no node of it.
func (g *Gateway) backend(ctx context.Context, name string) (*backend, error) {
	if err := resolver.ValidateName(name); err != nil {
		return nil, status.Errorf(codes.NotFound, "gateway: no service %q: %v", name, err)
	}
	if !g.state.known(name) {
		svcs, err := g.reg.GetService(ctx, name)
		nodes := 0
		for _, s := range svcs {
			nodes += len(s.Nodes)
		}
		switch {
		case errors.Is(err, resolver.ErrNotFound) || (err == nil && nodes == 0):
			return nil, status.Errorf(codes.NotFound, "gateway: the %s registry has no service %q", g.reg.String(), name)
		case err != nil:
			return nil, status.Errorf(codes.Unavailable, "gateway: %s registry: get service %q: %v", g.reg.String(), name, err)
		}
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return nil, status.Error(codes.Unavailable, "gateway: closed")
	}
	if b, ok := g.backends[name]; ok {
		return b, nil
	}
	cc, err := g.svc.Conn(name)
	if err != nil {
		return nil, err
	}
	b := &backend{name: name, cc: cc, dyn: dynamic.NewClient(cc)}
	g.backends[name] = b
	return b, nil
}

// forget makes the gateway learn a service's types again at its next call.
func (g *Gateway) forget(name string) {
	g.mu.Lock()
	b := g.backends[name]
	g.mu.Unlock()
	if b != nil {
		b.forget()
	}
}

// ServeHTTP routes a request: /api/ (JSON by name), /_/ and / (the
// dashboard), /{service}/... (Connect, gRPC-Web, gRPC and REST).
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rec := &recorder{ResponseWriter: w, code: http.StatusOK}
	defer func() { g.accessLog(r, rec, start) }()
	if g.opts.cors(rec, r) {
		return
	}
	if r.ContentLength > g.opts.bodyLimit {
		writeError(rec, status.Errorf(codes.ResourceExhausted, "gateway: the request body of %d bytes is over the limit of %d", r.ContentLength, g.opts.bodyLimit), http.StatusRequestEntityTooLarge)
		return
	}
	r.Body = http.MaxBytesReader(rec, r.Body, g.opts.bodyLimit)
	path := r.URL.Path
	switch {
	case strings.HasPrefix(path, "/api/"):
		g.serveAPI(rec, r)
	case path == "/" || strings.HasPrefix(path, "/_/"):
		if !g.opts.dashboard {
			writeError(rec, status.Error(codes.NotFound, "gateway: the dashboard is off"), 0)
			return
		}
		g.serveDashboard(rec, r)
	default:
		g.serveRPC(rec, r)
	}
}

// accessLog writes one line per request.
func (g *Gateway) accessLog(r *http.Request, rec *recorder, start time.Time) {
	if strings.HasPrefix(r.URL.Path, "/_/") && rec.code < 400 {
		return // the dashboard's own requests
	}
	g.opts.logger.Info("gateway: request", "method", r.Method, "path", r.URL.Path, "status", rec.code,
		"bytes", rec.bytes, "duration", time.Since(start), "remote", r.RemoteAddr, "node", rec.Header().Get(NodeHeader))
}

// recorder keeps the status and size of an answer for the access log.
type recorder struct {
	http.ResponseWriter
	code        int
	bytes       int64
	wroteHeader bool
}

func (r *recorder) WriteHeader(code int) {
	if !r.wroteHeader {
		r.code, r.wroteHeader = code, true
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(p []byte) (int, error) {
	r.wroteHeader = true
	n, err := r.ResponseWriter.Write(p)
	r.bytes += int64(n)
	return n, err
}

// Flush lets streams and server-sent events reach the client as they go.
func (r *recorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the connection.
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }
