// Package codec is microgrpc's codecs by content-type. Importing it
// registers, next to grpc-go's own "proto" codec (never replaced), a "json"
// codec ([github.com/microgrpc/microgrpc/codec/json]) and a "bytes" codec
// for raw frames ([github.com/microgrpc/microgrpc/codec/bytes]) with grpc-go,
// so a client can choose JSON per call with grpc.CallContentSubtype("json")
// and the server answers in kind.
//
// It also maps MIME content-types, as the broker carries them in message
// headers, to codecs ([ForContentType], [Marshal], [Unmarshal]), and offers
// strict negotiation for servers ([StrictServerTap]): grpc-go silently
// decodes a call whose content-subtype has no codec as protobuf; a strict
// server answers it with Unimplemented, naming the subtype.
package codec

import (
	"context"
	"errors"
	"fmt"
	"mime"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	_ "google.golang.org/grpc/encoding/proto" // the "proto" codec, registered by grpc-go itself
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"

	"github.com/microgrpc/microgrpc/codec/bytes"
	"github.com/microgrpc/microgrpc/codec/json"
)

// Content-types the broker sets, one per codec.
const (
	ContentTypeProto = "application/protobuf"
	ContentTypeJSON  = "application/json"
	ContentTypeBytes = "application/octet-stream"
)

// ErrUnknownContentType is wrapped by the error for a content-type that no
// codec handles.
var ErrUnknownContentType = errors.New("codec: unknown content-type")

// ErrCodec is wrapped by every marshal and unmarshal failure of [Marshal]
// and [Unmarshal].
var ErrCodec = errors.New("codec: cannot convert message")

// codecByType maps a MIME type (lower case, without parameters) to the name
// of the gRPC codec that handles it.
var codecByType = map[string]string{
	"application/protobuf":     "proto",
	"application/x-protobuf":   "proto",
	"application/grpc":         "proto",
	"application/grpc+proto":   "proto",
	"application/json":         json.Name,
	"application/grpc+json":    json.Name,
	"application/octet-stream": bytes.Name,
	"application/grpc+bytes":   bytes.Name,
}

var typeByCodec = map[string]string{
	"proto":    ContentTypeProto,
	json.Name:  ContentTypeJSON,
	bytes.Name: ContentTypeBytes,
}

// ForContentType returns the codec for a MIME content-type such as
// "application/json; charset=utf-8" (case and parameters are ignored). An
// empty content-type means protobuf, as in gRPC.
func ForContentType(ct string) (encoding.CodecV2, error) {
	if strings.TrimSpace(ct) == "" {
		return encoding.GetCodecV2("proto"), nil
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return nil, fmt.Errorf("%w: %q: %v", ErrUnknownContentType, ct, err)
	}
	name, ok := codecByType[mt]
	if !ok {
		return nil, fmt.Errorf("%w: %q (known: application/protobuf, application/json, application/octet-stream and their application/grpc+ forms)", ErrUnknownContentType, ct)
	}
	c := encoding.GetCodecV2(name)
	if c == nil {
		return nil, fmt.Errorf("%w: %q: codec %q is not registered", ErrUnknownContentType, ct, name)
	}
	return c, nil
}

// ContentType returns the MIME content-type for a codec name ("proto",
// "json", "bytes"), or "" for an unknown name.
func ContentType(codecName string) string { return typeByCodec[codecName] }

// Marshal encodes v with the codec for content-type ct.
func Marshal(ct string, v any) ([]byte, error) {
	c, err := ForContentType(ct)
	if err != nil {
		return nil, err
	}
	bs, err := c.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("%w: %s as %s: %v", ErrCodec, describe(v), ct, err)
	}
	defer bs.Free()
	return bs.Materialize(), nil
}

// Unmarshal decodes data into v with the codec for content-type ct.
func Unmarshal(ct string, data []byte, v any) error {
	c, err := ForContentType(ct)
	if err != nil {
		return err
	}
	if err := c.Unmarshal(mem.BufferSlice{mem.SliceBuffer(data)}, v); err != nil {
		return fmt.Errorf("%w: %d bytes of %s into %s: %v", ErrCodec, len(data), ctOrProto(ct), describe(v), err)
	}
	return nil
}

func ctOrProto(ct string) string {
	if ct == "" {
		return "(no content-type: protobuf)"
	}
	return ct
}

func describe(v any) string { return fmt.Sprintf("%T", v) }

// StrictServerTap returns a tap handle (for grpc.InTapHandle) that refuses,
// with Unimplemented, a call whose content-subtype has no registered codec,
// before its body is read. next, if not nil, runs after the check, so a
// server can keep a tap handle of its own (grpc-go allows only one).
func StrictServerTap(next tap.ServerInHandle) tap.ServerInHandle {
	return func(ctx context.Context, info *tap.Info) (context.Context, error) {
		for _, ct := range info.Header.Get("content-type") {
			if sub, ok := grpcSubtype(ct); ok && sub != "" && encoding.GetCodecV2(sub) == nil {
				return ctx, status.Errorf(codes.Unimplemented, "codec: unsupported content-subtype %q (content-type %q)", sub, ct)
			}
		}
		if next != nil {
			return next(ctx, info)
		}
		return ctx, nil
	}
}

// grpcSubtype returns the subtype of an application/grpc content-type, in
// lower case as grpc-go looks codecs up.
func grpcSubtype(ct string) (string, bool) {
	ct = strings.ToLower(ct)
	if !strings.HasPrefix(ct, "application/grpc") {
		return "", false
	}
	rest := ct[len("application/grpc"):]
	switch {
	case rest == "":
		return "", true
	case rest[0] == '+' || rest[0] == ';':
		return rest[1:], true
	}
	return "", false
}
