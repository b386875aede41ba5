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
// server answers it with Unimplemented, naming the subtype. Parameters such
// as "application/grpc+json;charset=utf-8" keep the codec they name.
package codec

import (
	"context"
	"errors"
	"fmt"
	"mime"
	"strconv"
	"strings"
	"unicode/utf8"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	_ "google.golang.org/grpc/encoding/proto" // the "proto" codec, registered by grpc-go itself
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"
	"google.golang.org/protobuf/proto"

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
	mt := ct
	if _, plain := codecByType[ct]; !plain {
		// Only a content-type with parameters, odd case or spacing needs
		// parsing; the ones brokers send match as they are.
		var err error
		if mt, _, err = mime.ParseMediaType(ct); err != nil {
			return nil, fmt.Errorf("%w: %q: %v", ErrUnknownContentType, ct, err)
		}
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
	if m, ok := v.(proto.Message); ok && c.Name() == "proto" {
		// What grpc-go's codec does, without its pooled buffer and the
		// copy out of it.
		b, err := proto.Marshal(m)
		if err != nil {
			return nil, fmt.Errorf("%w: %s as %s: %v", ErrCodec, describe(v), ct, err)
		}
		return b, nil
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
	if m, ok := v.(proto.Message); ok && c.Name() == "proto" {
		// grpc-go's codec would copy data into a pooled buffer first.
		if err := proto.Unmarshal(data, m); err != nil {
			return fmt.Errorf("%w: %d bytes of %s into %s: %v", ErrCodec, len(data), ctOrProto(ct), describe(v), err)
		}
		return nil
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
//
// Parameters after the content-type ("application/grpc;charset=utf-8",
// "application/grpc+json; charset=utf-8") do not change the codec. grpc-go
// itself, though, takes everything after "+" or ";" as the subtype, case
// and parameters included, and decodes as protobuf when no codec is
// registered under that text. This package registers the charset=utf-8
// spellings of "proto" and "json" as aliases so that grpc-go picks the
// right codec for them; any other spelling that grpc-go would decode with
// a different codec than the one it names ("application/grpc+JSON",
// "application/grpc+json;charset=UTF-8") is refused with Unimplemented
// rather than misread.
//
// grpc-go runs the tap with its transport's lock held, so the check does
// not block and, on the accepted path, only allocates for upper case.
func StrictServerTap(next tap.ServerInHandle) tap.ServerInHandle {
	return func(ctx context.Context, info *tap.Info) (context.Context, error) {
		// HTTP/2 header names are lower case, and so are grpc-go's
		// metadata keys: index directly rather than through MD.Get.
		for _, ct := range info.Header["content-type"] {
			if err := checkContentType(ct); err != nil {
				return ctx, err
			}
		}
		if next != nil {
			return next(ctx, info)
		}
		return ctx, nil
	}
}

// knownCodecs lists, for error messages, the codecs this package registers.
const knownCodecs = "proto, json, bytes"

// checkContentType returns an Unimplemented status error when grpc-go's
// server would not decode a call of gRPC content-type ct with the codec ct
// names.
func checkContentType(ct string) error {
	switch ct {
	case "application/grpc", "application/grpc+proto":
		// What nearly every call sends, and always right: checked first,
		// since the tap runs on the connection's reader, under its lock.
		return nil
	}
	raw, ok := grpcSubtype(ct)
	if !ok {
		// Not a gRPC content-type: grpc-go answers 415 before any tap runs
		// and keeps such values out of the metadata, so this is not reached.
		return nil
	}
	name := subtypeName(raw)
	want := encoding.GetCodecV2(name)
	if want == nil {
		return status.Errorf(codes.Unimplemented, "codec: unsupported content-subtype %s (content-type %s); known codecs: %s", quote(name), quote(ct), knownCodecs)
	}
	if w, used := canonical(want), codecUsed(raw); w != used {
		return status.Errorf(codes.Unimplemented, "codec: content-type %s names codec %q, but grpc-go looks codecs up by the literal subtype %s and would decode the call with %q instead; send content-type %q", quote(ct), w, quote(raw), used, "application/grpc+"+w)
	}
	return nil
}

// grpcSubtype returns the text after "application/grpc+" or
// "application/grpc;", exactly as grpc-go's server takes it
// (internal/grpcutil.ContentSubtype on the raw header value): neither case
// nor parameters are touched, since that text is what grpc-go looks its
// codec up by.
func grpcSubtype(ct string) (string, bool) {
	const base = "application/grpc"
	if !strings.HasPrefix(ct, base) {
		return "", false
	}
	rest := ct[len(base):]
	switch {
	case rest == "":
		return "", true
	case rest[0] == '+' || rest[0] == ';':
		return rest[1:], true
	}
	return "", false
}

// subtypeName returns the codec name a subtype (as [grpcSubtype] returns
// it) means: lower case, without parameters, "proto" when there is none.
// In "application/grpc;charset=utf-8" the text after ";" is a parameter,
// not a subtype; a codec name never holds "=".
func subtypeName(raw string) string {
	name, _, _ := strings.Cut(raw, ";")
	name = strings.ToLower(strings.TrimSpace(name))
	if name == "" || strings.Contains(name, "=") {
		return "proto"
	}
	return name
}

// codecUsed returns the name of the codec grpc-go's server decodes a call
// with, for the subtype it parsed (Server.getCodec): the codec registered
// under that exact text, else protobuf.
func codecUsed(raw string) string {
	if raw == "" {
		return "proto"
	}
	c := encoding.GetCodecV2(raw)
	if c == nil {
		return "proto"
	}
	return canonical(c)
}

// canonical returns the name of the codec c is, seeing through aliases.
func canonical(c encoding.CodecV2) string {
	if a, ok := c.(alias); ok {
		return a.target
	}
	return strings.ToLower(c.Name())
}

// maxQuoted bounds how many bytes of a client-chosen string an error
// quotes: the client picks the content-type, and the error goes back in a
// header and into logs.
const maxQuoted = 64

// quote quotes s, cut to maxQuoted bytes (at a rune boundary) with "..."
// and its full length when longer.
func quote(s string) string {
	if len(s) <= maxQuoted {
		return strconv.Quote(s)
	}
	i := maxQuoted
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return fmt.Sprintf("%q... (%d bytes)", s[:i], len(s))
}

// alias registers a codec under another content-subtype. grpc-go's server
// looks codecs up by the text after "application/grpc+" or ";" verbatim, so
// "application/grpc+json;charset=utf-8" finds a codec only if one is
// registered as "json;charset=utf-8"; without it grpc-go would decode the
// JSON body as protobuf. The target is looked up per call, so an alias
// follows a codec re-registered under the target's name.
type alias struct {
	name, target string
}

func (a alias) Name() string { return a.name }

func (a alias) Marshal(v any) (mem.BufferSlice, error) {
	return encoding.GetCodecV2(a.target).Marshal(v)
}

func (a alias) Unmarshal(data mem.BufferSlice, v any) error {
	return encoding.GetCodecV2(a.target).Unmarshal(data, v)
}

// aliases are the spellings with parameters that grpc-go is given a codec
// for. Only charset=utf-8 is common (JSON is UTF-8 by definition, and
// protobuf ignores it); grpc-go keeps the header's case and
// encoding.RegisterCodecV2 lowers names, so "UTF-8" cannot be aliased.
// Raw frames ("bytes") have no charset.
var aliases = map[string]string{
	"charset=utf-8":               "proto", // application/grpc;charset=utf-8
	" charset=utf-8":              "proto", // application/grpc; charset=utf-8
	"proto;charset=utf-8":         "proto",
	"proto; charset=utf-8":        "proto",
	json.Name + ";charset=utf-8":  json.Name,
	json.Name + "; charset=utf-8": json.Name,
}

// Registered in init, as encoding.RegisterCodecV2 requires; the json
// package's and grpc-go's proto codec's init have run by then.
func init() {
	for name, target := range aliases {
		encoding.RegisterCodecV2(alias{name: name, target: target})
	}
}
