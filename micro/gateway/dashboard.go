package gateway

import (
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// The dashboard's page, script and style: plain files, no build step.
//
//go:embed dashboard
var assets embed.FS

// serveDashboard serves / (the page), /_/events (the registry and the
// nodes' health as server-sent events), /_/describe/{service} (its
// methods and their types) and the page's files under /_/.
func (g *Gateway) serveDashboard(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeError(w, status.Errorf(codes.InvalidArgument, "gateway: %s %s: the dashboard takes GET", r.Method, r.URL.Path), http.StatusMethodNotAllowed)
		return
	}
	w.Header().Set("X-Content-Type-Options", "nosniff")
	switch path := r.URL.Path; {
	case path == "/":
		w.Header().Set("Content-Security-Policy", "default-src 'self'; style-src 'self'; script-src 'self'")
		serveAsset(w, r, "index.html")
	case path == "/_/events":
		g.serveEvents(w, r)
	case strings.HasPrefix(path, "/_/describe/"):
		g.serveDescribe(w, r, strings.TrimPrefix(path, "/_/describe/"))
	default:
		serveAsset(w, r, strings.TrimPrefix(path, "/_/"))
	}
}

func serveAsset(w http.ResponseWriter, r *http.Request, name string) {
	sub, _ := fs.Sub(assets, "dashboard")
	if _, err := fs.Stat(sub, name); err != nil || strings.Contains(name, "/") {
		writeError(w, status.Errorf(codes.NotFound, "gateway: no page %s", r.URL.Path), 0)
		return
	}
	w.Header().Set("Cache-Control", "no-cache")
	http.ServeFileFS(w, r, sub, name)
}

// serveEvents streams the state: all of it at once, then again after
// every change (registry events, health changes), at most every 100 ms.
func (g *Gateway) serveEvents(w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	changed, cancel := g.state.subscribe()
	defer cancel()
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	dirty := true
	for {
		if dirty {
			js, err := json.Marshal(g.state.snapshot())
			if err != nil {
				return
			}
			if _, err := fmt.Fprintf(w, "event: state\ndata: %s\n\n", js); err != nil {
				return
			}
			if err := rc.Flush(); err != nil {
				return
			}
			dirty = false
		}
		select {
		case <-r.Context().Done():
			return
		case <-g.ctx.Done():
			return
		case <-changed:
			// Wait for the tick, so that a burst is one event.
			select {
			case <-tick.C:
			case <-r.Context().Done():
				return
			}
			dirty = true
		}
	}
}

// method is a method as the dashboard shows it.
type method struct {
	Name            string `json:"name"`
	Call            string `json:"call"` // as /api/{service}/ takes it: greeter.Greeter/Hello
	ClientStreaming bool   `json:"clientStreaming"`
	ServerStreaming bool   `json:"serverStreaming"`
	Request         schema `json:"request"`
	Response        schema `json:"response"`
	Example         string `json:"example"` // a request to start from, as JSON
}

// schema is a message type: its fields, with nested messages written out
// (to a depth of 3).
type schema struct {
	Name   string  `json:"name"`
	Fields []field `json:"fields"`
}

// field is one field of a schema.
type field struct {
	Name     string  `json:"name"` // as JSON spells it
	Type     string  `json:"type"` // string, int32, greeter.Request, map<string, int32>...
	Repeated bool    `json:"repeated,omitempty"`
	Message  *schema `json:"message,omitempty"`
}

// serviceMethods is a gRPC service of a registry service.
type serviceMethods struct {
	Service string   `json:"service"`
	Methods []method `json:"methods"`
}

// serveDescribe answers the methods of a registry service, learned by
// reflection.
func (g *Gateway) serveDescribe(w http.ResponseWriter, r *http.Request, name string) {
	ctx, cancel, b, ok := g.begin(w, r, name)
	if !ok {
		return
	}
	defer cancel()
	dyn := b.client()
	names, err := dyn.Services(ctx)
	if err != nil {
		writeError(w, serviceErr(name, err), 0)
		return
	}
	out := []serviceMethods{}
	for _, n := range names {
		if strings.HasPrefix(n, "grpc.reflection.") {
			continue
		}
		sd, err := dyn.Service(ctx, n)
		if err != nil {
			writeError(w, serviceErr(name, err), 0)
			return
		}
		sm := serviceMethods{Service: n, Methods: []method{}}
		for i := range sd.Methods().Len() {
			md := sd.Methods().Get(i)
			sm.Methods = append(sm.Methods, method{
				Name: string(md.Name()), Call: n + "/" + string(md.Name()),
				ClientStreaming: md.IsStreamingClient(), ServerStreaming: md.IsStreamingServer(),
				Request: schemaOf(md.Input(), 3), Response: schemaOf(md.Output(), 3),
				Example: example(md.Input()),
			})
		}
		out = append(out, sm)
	}
	writeJSON(w, http.StatusOK, out)
}

func schemaOf(md protoreflect.MessageDescriptor, depth int) schema {
	s := schema{Name: string(md.FullName()), Fields: []field{}}
	for i := range md.Fields().Len() {
		fd := md.Fields().Get(i)
		f := field{Name: fd.JSONName(), Type: typeName(fd), Repeated: fd.IsList()}
		if m := fd.Message(); m != nil && !fd.IsMap() && depth > 1 && !strings.HasPrefix(string(m.FullName()), "google.protobuf.") {
			sub := schemaOf(m, depth-1)
			f.Message = &sub
		}
		s.Fields = append(s.Fields, f)
	}
	return s
}

func typeName(fd protoreflect.FieldDescriptor) string {
	switch {
	case fd.IsMap():
		return "map<" + typeName(fd.MapKey()) + ", " + typeName(fd.MapValue()) + ">"
	case fd.Message() != nil:
		return string(fd.Message().FullName())
	case fd.Enum() != nil:
		return string(fd.Enum().FullName())
	}
	return fd.Kind().String()
}

// example is a request with its scalar fields at their zero values, to
// edit in the form.
func example(md protoreflect.MessageDescriptor) string {
	m := map[string]any{}
	for i := range md.Fields().Len() {
		fd := md.Fields().Get(i)
		switch {
		case fd.IsList() || fd.IsMap() || fd.Message() != nil:
			continue
		case fd.Kind() == protoreflect.StringKind || fd.Kind() == protoreflect.BytesKind:
			m[fd.JSONName()] = ""
		case fd.Kind() == protoreflect.BoolKind:
			m[fd.JSONName()] = false
		case fd.Enum() != nil:
			m[fd.JSONName()] = string(fd.Enum().Values().Get(0).Name())
		default:
			m[fd.JSONName()] = 0
		}
	}
	js, _ := json.Marshal(m)
	return string(js)
}
