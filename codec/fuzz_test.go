package codec

import (
	"errors"
	"mime"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/microgrpc/microgrpc/codec/bytes"
	pb "github.com/microgrpc/microgrpc/proto/greeter"
)

// contentTypeSeeds are content-types clients send, with and without
// parameters, in odd cases, and broken.
var contentTypeSeeds = []string{
	"", " ", "application/grpc", "application/grpc+proto", "application/grpc+json", "application/grpc+bytes",
	"application/grpc;charset=utf-8", "application/grpc; charset=utf-8", "application/grpc+json;charset=utf-8",
	"application/grpc+json; charset=utf-8", "application/grpc+JSON", "application/grpc+json;charset=UTF-8",
	"application/grpc+json;indent=2", "application/grpc+bytes;charset=utf-8", "application/grpc+xml;charset=utf-8",
	"application/grpc+", "application/grpc;", "application/grpc+;json", "application/grpc;json", "application/grpcx",
	"application/grpc+json ;charset=utf-8", "Application/GRPC+json", "application/grpc+" + strings.Repeat("\xff", 100),
	"application/json", "application/json; charset=utf-8", "APPLICATION/JSON", "application/x-protobuf",
	"application/protobuf", "application/octet-stream", "text/plain", "application/json;", "application/json; =",
	`application/json; charset="utf-8"`, "application/json\x00",
}

// grpcGoSubtype is how grpc-go's server splits a content-type
// (internal/grpcutil.ContentSubtype): the literal text after
// "application/grpc+" or "application/grpc;", or not gRPC at all.
func grpcGoSubtype(ct string) (string, bool) {
	const base = "application/grpc"
	switch {
	case ct == base:
		return "", true
	case len(ct) > len(base) && ct[:len(base)] == base && (ct[len(base)] == '+' || ct[len(base)] == ';'):
		return ct[len(base)+1:], true
	}
	return "", false
}

// grpcGoCodec is the codec grpc-go's server decodes a call with, for the
// subtype it split off (Server.getCodec): the one registered under exactly
// that text, else protobuf.
func grpcGoCodec(subtype string) string {
	if subtype != "" {
		if c := encoding.GetCodecV2(subtype); c != nil {
			return canonical(c)
		}
	}
	return "proto"
}

// FuzzStrictServerTap checks the strict tap against what grpc-go's server
// would do with the same header: the tap refuses only gRPC content-types,
// always with Unimplemented and a bounded message; and for a content-type
// that parses as a MIME type, it accepts exactly when grpc-go would decode
// the call with the codec the MIME type names.
func FuzzStrictServerTap(f *testing.F) {
	for _, ct := range contentTypeSeeds {
		f.Add(ct)
	}
	f.Fuzz(func(t *testing.T, ct string) {
		err := checkContentType(ct)
		subtype, isGRPC := grpcGoSubtype(ct)
		if err != nil {
			if !isGRPC {
				t.Fatalf("refused %q, which grpc-go answers with 415 before any tap: %v", ct, err)
			}
			st, ok := status.FromError(err)
			if !ok || st.Code() != codes.Unimplemented {
				t.Fatalf("refused %q with %v, want Unimplemented", ct, err)
			}
			// Two quotes of at most 64 bytes, each byte at most \xNN.
			if len(st.Message()) > 2*4*maxQuoted+300 {
				t.Fatalf("refusal of a %d-byte content-type is %d bytes long", len(ct), len(st.Message()))
			}
		}
		if !isGRPC {
			return
		}
		mt, _, perr := mime.ParseMediaType(ct)
		if perr != nil {
			return // no MIME meaning to check against
		}
		named := "proto"
		if rest, ok := strings.CutPrefix(mt, "application/grpc+"); ok && rest != "" {
			named = rest
		} else if mt != "application/grpc" && mt != "application/grpc+" {
			return // grpc-go's split and MIME's disagree on where the type ends
		}
		want := encoding.GetCodecV2(named)
		decodesAsNamed := want != nil && canonical(want) == grpcGoCodec(subtype)
		if decodesAsNamed != (err == nil) {
			t.Fatalf("content-type %q names codec %q, grpc-go would decode with %q; tap says %v", ct, named, grpcGoCodec(subtype), err)
		}
	})
}

// asciiUpper upper-cases ASCII letters only, as a client may spell a MIME
// type.
func asciiUpper(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' {
			return r - 'a' + 'A'
		}
		return r
	}, s)
}

// FuzzForContentType checks the broker's content-type lookup: a clear
// error (ErrUnknownContentType) or one of our codecs; case does not
// matter; and each codec's own content-type leads back to it.
func FuzzForContentType(f *testing.F) {
	for _, ct := range contentTypeSeeds {
		f.Add(ct)
	}
	f.Fuzz(func(t *testing.T, ct string) {
		c, err := ForContentType(ct)
		if err != nil {
			if c != nil || !errors.Is(err, ErrUnknownContentType) {
				t.Fatalf("ForContentType(%q) = %v, %v; want nil and ErrUnknownContentType", ct, c, err)
			}
		} else {
			name := canonical(c)
			if ContentType(name) == "" {
				t.Fatalf("ForContentType(%q) = codec %q, which has no content-type", ct, name)
			}
			back, err := ForContentType(ContentType(name))
			if err != nil || canonical(back) != name {
				t.Fatalf("content-type %q of codec %q leads to %v, %v", ContentType(name), name, back, err)
			}
		}
		up, upErr := ForContentType(asciiUpper(ct))
		if (upErr == nil) != (err == nil) || err == nil && canonical(up) != canonical(c) {
			t.Fatalf("ForContentType(%q) = %v, %v but ForContentType(%q) = %v, %v", ct, c, err, asciiUpper(ct), up, upErr)
		}
	})
}

// unmarshalTypes are the content-types FuzzUnmarshal decodes with.
var unmarshalTypes = []string{"", ContentTypeJSON, "application/grpc+json; charset=utf-8", ContentTypeProto, ContentTypeBytes}

// FuzzUnmarshal decodes any bytes as a broker message body with each
// codec: a clear error (ErrCodec) or a message that encodes and decodes
// back to the same message.
func FuzzUnmarshal(f *testing.F) {
	req, _ := proto.Marshal(&pb.Request{Name: "n", Count: 3})
	st, _ := structpb.NewStruct(map[string]any{"a": 1.5, "b": []any{"x", true, nil}, "c": map[string]any{}})
	stBin, _ := proto.Marshal(st)
	for i := range unmarshalTypes {
		w := uint8(i)
		f.Add(w, req)
		f.Add(w, stBin)
		f.Add(w, []byte(`{"name":"n","count":3}`))
		f.Add(w, []byte(`{"a":1.5,"b":["x",true,null],"c":{}}`))
		f.Add(w, []byte(`{"name":"\ud800"}`))
		f.Add(w, []byte{0xff, 0xff, 0xff})
	}
	f.Fuzz(func(t *testing.T, which uint8, data []byte) {
		ct := unmarshalTypes[int(which)%len(unmarshalTypes)]
		for _, newMsg := range []func() any{
			func() any { return new(pb.Request) },
			func() any { return new(structpb.Struct) },
			func() any { return new(bytes.Frame) },
		} {
			m := newMsg()
			if err := Unmarshal(ct, data, m); err != nil {
				if !errors.Is(err, ErrCodec) {
					t.Fatalf("Unmarshal(%q, %q) into %T = %v, want ErrCodec", ct, data, m, err)
				}
				continue
			}
			enc, err := Marshal(ct, m)
			if err != nil {
				if _, isStruct := m.(*structpb.Struct); isStruct && ct != ContentTypeProto && ct != "" {
					continue // a Struct's NaN or infinity has no JSON
				}
				t.Fatalf("Marshal(%q) of what Unmarshal gave (%v): %v", ct, m, err)
			}
			m2 := newMsg()
			if err := Unmarshal(ct, enc, m2); err != nil {
				t.Fatalf("Unmarshal(%q, Marshal(Unmarshal(%q))) = %v", ct, data, err)
			}
			if !sameMessage(m, m2) {
				t.Fatalf("%q round trip of %q into %T: %v, then %v", ct, data, m, m, m2)
			}
		}
	})
}

// sameMessage compares decoded messages by their deterministic encoding
// (NaN included).
func sameMessage(a, b any) bool {
	if fa, ok := a.(*bytes.Frame); ok {
		return string(*fa) == string(*b.(*bytes.Frame))
	}
	opts := proto.MarshalOptions{Deterministic: true}
	ea, errA := opts.Marshal(a.(proto.Message))
	eb, errB := opts.Marshal(b.(proto.Message))
	return errA == nil && errB == nil && string(ea) == string(eb)
}
