// Package json registers a gRPC codec for JSON under the content-subtype
// "json" (wire content-type application/grpc+json). Proto messages go
// through protojson, so field names and well-known types follow the proto3
// JSON mapping that every other gRPC language uses; other Go values go
// through encoding/json.
//
// A client picks it per call with grpc.CallContentSubtype("json"); a server
// answers in JSON without any option, since grpc-go replies with the
// request's codec. Import this package (or package codec) for its side
// effect in both processes.
package json

import (
	stdjson "encoding/json"
	"fmt"

	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// Name is the content-subtype this codec is registered under.
const Name = "json"

func init() {
	encoding.RegisterCodecV2(codec{})
}

// Codec returns the JSON codec, for use outside gRPC (the broker).
func Codec() encoding.CodecV2 { return codec{} }

var (
	// Defaults: zero values are omitted, as the proto3 JSON mapping and
	// other languages' encoders do.
	marshal = protojson.MarshalOptions{}
	// DiscardUnknown: a newer peer may send fields we do not know yet; the
	// proto3 JSON mapping says parsers should accept that, like the binary
	// format does.
	unmarshal = protojson.UnmarshalOptions{DiscardUnknown: true}
)

type codec struct{}

func (codec) Name() string { return Name }

func (codec) Marshal(v any) (mem.BufferSlice, error) {
	var (
		b   []byte
		err error
	)
	if m, ok := v.(proto.Message); ok {
		b, err = marshal.Marshal(m)
	} else {
		b, err = stdjson.Marshal(v)
	}
	if err != nil {
		return nil, fmt.Errorf("json codec: marshal %T: %w", v, err)
	}
	return mem.BufferSlice{mem.SliceBuffer(b)}, nil
}

func (codec) Unmarshal(data mem.BufferSlice, v any) error {
	// data is freed when we return; Materialize copies it, and neither
	// decoder keeps references into its input.
	b := data.Materialize()
	var err error
	if m, ok := v.(proto.Message); ok {
		err = unmarshal.Unmarshal(b, m)
	} else {
		err = stdjson.Unmarshal(b, v)
	}
	if err != nil {
		return fmt.Errorf("json codec: unmarshal into %T: %w", v, err)
	}
	return nil
}
