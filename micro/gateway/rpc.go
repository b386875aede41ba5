package gateway

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"

	"connectrpc.com/vanguard"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	bytescodec "github.com/microgrpc/microgrpc/codec/bytes"
	"github.com/microgrpc/microgrpc/micro/dynamic"
)

// serveRPC serves /{service}/...: Connect, gRPC-Web and gRPC at
// /{service}/{pkg.Service}/{Method}, and the REST routes of the service's
// google.api.http annotations under /{service}. vanguard does the
// protocols, from the descriptors reflection gave; what it produces is a
// gRPC request, which the in-process proxy server forwards to the service
// through its connection.
func (g *Gateway) serveRPC(w http.ResponseWriter, r *http.Request) {
	name, rest, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
	b, err := g.backend(r.Context(), name)
	if err != nil {
		writeError(w, err, 0)
		return
	}
	tc, err := b.transcoderFor(r.Context(), g)
	if err != nil {
		writeError(w, serviceErr(name, err), 0)
		return
	}
	r2 := r.Clone(r.Context())
	r2.URL.Path = "/" + rest
	if raw := r.URL.RawPath; raw != "" {
		if _, rawRest, ok := strings.Cut(strings.TrimPrefix(raw, "/"), "/"); ok {
			r2.URL.RawPath = "/" + rawRest
		}
	}
	tc.ServeHTTP(w, r2)
}

// transcoderFor returns the backend's vanguard transcoder, building it
// from the service's descriptors the first time (and after forget).
func (b *backend) transcoderFor(ctx context.Context, g *Gateway) (http.Handler, error) {
	b.mu.Lock()
	dyn, tc := b.dyn, b.transcoder
	b.mu.Unlock()
	if tc != nil {
		return tc, nil
	}
	tc, err := g.newTranscoder(ctx, b, dyn)
	if err != nil {
		return nil, err
	}
	b.mu.Lock()
	if b.dyn == dyn { // not forgotten meanwhile
		b.transcoder = tc
	}
	b.mu.Unlock()
	return tc, nil
}

func (g *Gateway) newTranscoder(ctx context.Context, b *backend, dyn *dynamic.Client) (http.Handler, error) {
	names, err := dyn.Services(ctx)
	if err != nil {
		return nil, err
	}
	// The proxy learns which service a request is for from its context.
	toProxy := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g.proxy.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), backendKey{}, b)))
	})
	var svcs []*vanguard.Service
	for _, n := range names {
		if strings.HasPrefix(n, "grpc.reflection.") {
			continue
		}
		sd, err := dyn.Service(ctx, n)
		if err != nil {
			return nil, err
		}
		svcs = append(svcs, vanguard.NewServiceWithSchema(sd, toProxy))
	}
	limit := uint32(min(g.opts.bodyLimit, int64(^uint32(0))))
	notFound := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, status.Errorf(codes.NotFound, "gateway: service %q has no method or route %s %s", b.name, r.Method, r.URL.Path), 0)
	})
	tc, err := vanguard.NewTranscoder(svcs,
		vanguard.WithDefaultServiceOptions(
			vanguard.WithTargetProtocols(vanguard.ProtocolGRPC),
			vanguard.WithTargetCodecs(vanguard.CodecProto),
			vanguard.WithMaxMessageBufferBytes(limit),
		),
		vanguard.WithUnknownHandler(notFound),
		vanguard.WithCodec(newJSONCodec))
	if err != nil {
		return nil, status.Errorf(codes.Internal, "gateway: service %q: its descriptors: %v", b.name, err)
	}
	return tc, nil
}

type backendKey struct{}

// protoFrames forwards messages unchanged, as the bytes codec does, under
// the content-subtype "proto": services decode them as what they are.
type protoFrames struct{ encoding.CodecV2 }

func (protoFrames) Name() string { return "proto" }

// forward is the proxy server's one handler: it forwards a call, message
// by message and unchanged (the bytes codec on both sides), to the
// backend the request's context names, with the allowed metadata and the
// call's deadline.
func (g *Gateway) forward(_ any, ss grpc.ServerStream) error {
	method, _ := grpc.MethodFromServerStream(ss)
	b, _ := ss.Context().Value(backendKey{}).(*backend)
	if b == nil {
		return status.Errorf(codes.Unimplemented, "gateway: unknown method %s", method)
	}
	ctx := ss.Context()
	in, _ := metadata.FromIncomingContext(ctx)
	out := metadata.MD{}
	for k, vs := range in {
		if g.opts.allowedHeader(k) {
			out[k] = vs
		}
	}
	ctx = metadata.NewOutgoingContext(ctx, out)
	cancel := context.CancelFunc(func() {})
	if _, ok := ctx.Deadline(); !ok && g.opts.timeout > 0 {
		ctx, cancel = context.WithTimeout(ctx, g.opts.timeout)
	}
	defer cancel()
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	cs, err := b.cc.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}, method, grpc.ForceCodecV2(protoFrames{bytescodec.Codec()}))
	if err != nil {
		return serviceErr(b.name, err)
	}
	// Requests, as they come. The goroutine ends with the call: RecvMsg
	// returns once the handler returned.
	go func() {
		for {
			var f bytescodec.Frame
			if err := ss.RecvMsg(&f); err != nil {
				if errors.Is(err, io.EOF) {
					_ = cs.CloseSend()
				} else {
					stop()
				}
				return
			}
			if err := cs.SendMsg(&f); err != nil {
				return // RecvMsg below says why
			}
		}
	}()
	hdr, err := cs.Header()
	if err == nil {
		hdr = hdr.Copy()
		if p, ok := peer.FromContext(cs.Context()); ok && p.Addr != nil {
			hdr.Set(strings.ToLower(NodeAddressHeader), p.Addr.String())
			if id := g.state.nodeAt(ctx, b.name, p.Addr.String()); id != "" {
				hdr.Set(strings.ToLower(NodeHeader), id)
			}
		}
		_ = ss.SetHeader(hdr)
	}
	for {
		var f bytescodec.Frame
		if err := cs.RecvMsg(&f); err != nil {
			ss.SetTrailer(cs.Trailer())
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err // the service's status, details and all
		}
		if err := ss.SendMsg(&f); err != nil {
			return err
		}
	}
}
