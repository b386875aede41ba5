// Package bytes registers a gRPC codec for raw frames under the
// content-subtype "bytes": the message is the frame, unchanged. Use it to
// forward or inspect messages without knowing their type (a proxy, a test
// sending a deliberately malformed body). Values must be *Frame (or *[]byte).
package bytes

import (
	"fmt"

	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
)

// Name is the content-subtype this codec is registered under.
const Name = "bytes"

// Frame is one raw message.
type Frame []byte

func init() {
	encoding.RegisterCodecV2(codec{})
}

// Codec returns the bytes codec, for use outside gRPC (the broker).
func Codec() encoding.CodecV2 { return codec{} }

type codec struct{}

func (codec) Name() string { return Name }

func (codec) Marshal(v any) (mem.BufferSlice, error) {
	switch f := v.(type) {
	case *Frame:
		return mem.BufferSlice{mem.SliceBuffer(*f)}, nil
	case *[]byte:
		return mem.BufferSlice{mem.SliceBuffer(*f)}, nil
	case Frame:
		return mem.BufferSlice{mem.SliceBuffer(f)}, nil
	case []byte:
		return mem.BufferSlice{mem.SliceBuffer(f)}, nil
	}
	return nil, fmt.Errorf("bytes codec: message is %T, want *bytes.Frame or *[]byte", v)
}

func (codec) Unmarshal(data mem.BufferSlice, v any) error {
	switch f := v.(type) {
	case *Frame:
		*f = data.Materialize()
	case *[]byte:
		*f = data.Materialize()
	default:
		return fmt.Errorf("bytes codec: message is %T, want *bytes.Frame or *[]byte", v)
	}
	return nil
}
