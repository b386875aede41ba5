package gateway

import (
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// DefaultHeaders returns the request headers passed to services as gRPC
// metadata unless [WithHeaders] says otherwise: credentials, and the
// request and trace ids that tie a call to its logs (Authorization,
// X-Request-Id, Traceparent, Tracestate, Baggage).
func DefaultHeaders() []string {
	return []string{"Authorization", "X-Request-Id", "Traceparent", "Tracestate", "Baggage"}
}

// Defaults of the options.
const (
	DefaultTimeout   = 30 * time.Second
	DefaultBodyLimit = 4 << 20 // a node's own default request limit
)

type options struct {
	timeout      time.Duration
	bodyLimit    int64
	headers      map[string]bool // lower case
	corsOrigins  []string        // nil: CORS off; "*": any origin
	logger       *slog.Logger
	nodeDialOpts []grpc.DialOption
	dashboard    bool
}

func defaultOptions() options {
	o := options{
		timeout:      DefaultTimeout,
		bodyLimit:    DefaultBodyLimit,
		headers:      map[string]bool{},
		logger:       slog.Default(),
		nodeDialOpts: []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())},
		dashboard:    true,
	}
	for _, h := range DefaultHeaders() {
		o.headers[strings.ToLower(h)] = true
	}
	return o
}

// Option configures a [Gateway].
type Option func(*options)

// WithTimeout is the deadline of a call whose request names none (no
// grpc-timeout or Connect-Timeout-Ms header); 0 leaves such calls without
// one. Default [DefaultTimeout].
func WithTimeout(d time.Duration) Option { return func(o *options) { o.timeout = d } }

// WithBodyLimit bounds a request's body, in bytes; larger bodies get 413.
// Default [DefaultBodyLimit].
func WithBodyLimit(n int64) Option { return func(o *options) { o.bodyLimit = n } }

// WithHeaders replaces the [DefaultHeaders]: the request headers (any case)
// passed to services as metadata. Others are dropped, so that a browser's
// cookies or a proxy's headers do not reach services unasked.
func WithHeaders(names ...string) Option {
	return func(o *options) {
		o.headers = map[string]bool{}
		for _, h := range names {
			o.headers[strings.ToLower(h)] = true
		}
	}
}

// WithCORS lets pages from the given origins ("https://app.example.com",
// or "*" for any) call the gateway from a browser. CORS is off by default:
// browsers then call it only from pages it serves itself (the dashboard).
func WithCORS(origins ...string) Option {
	return func(o *options) { o.corsOrigins = append([]string{}, origins...) }
}

// WithLogger is where access lines and errors go. Default slog.Default().
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// WithNodeDialOptions are the options of the dashboard's connections to
// single nodes, which watch each node's health: by default plaintext;
// give TLS credentials when the services serve TLS. Calls do not use them:
// they go through the service's Dial.
func WithNodeDialOptions(opts ...grpc.DialOption) Option {
	return func(o *options) { o.nodeDialOpts = opts }
}

// WithDashboard turns the dashboard at / on (the default) or off.
func WithDashboard(on bool) Option { return func(o *options) { o.dashboard = on } }

// allowedHeader reports whether a request header becomes metadata.
func (o *options) allowedHeader(name string) bool { return o.headers[strings.ToLower(name)] }

// cors answers a preflight and sets the headers of an allowed origin. It
// returns true when the request is answered.
func (o *options) cors(w http.ResponseWriter, r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" || o.corsOrigins == nil {
		return false
	}
	allowed := false
	for _, a := range o.corsOrigins {
		allowed = allowed || a == "*" || a == origin
	}
	if !allowed {
		return false
	}
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", origin)
	h.Add("Vary", "Origin")
	h.Set("Access-Control-Expose-Headers", "Grpc-Status, Grpc-Message, Grpc-Status-Details-Bin, "+NodeHeader+", "+NodeAddressHeader)
	if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
		h.Set("Access-Control-Allow-Methods", "GET, POST, PUT, PATCH, DELETE")
		h.Set("Access-Control-Allow-Headers", "Content-Type, Connect-Protocol-Version, Connect-Timeout-Ms, Grpc-Timeout, X-Grpc-Web, X-User-Agent, "+strings.Join(slices.Sorted(maps.Keys(o.headers)), ", "))
		h.Set("Access-Control-Max-Age", "7200")
		w.WriteHeader(http.StatusNoContent)
		return true
	}
	return false
}
