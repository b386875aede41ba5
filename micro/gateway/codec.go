package gateway

import (
	"connectrpc.com/connect"
	"connectrpc.com/vanguard"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// jsonCodec is vanguard's JSON codec with two changes, so that every route
// treats JSON as JSON by name does: a body that does not decode is the
// caller's error (InvalidArgument, 400), not the gateway's (vanguard says
// Unknown, 500), and fields the message does not have are errors, not
// silently dropped.
type jsonCodec struct{ vanguard.JSONCodec }

func newJSONCodec(res vanguard.TypeResolver) vanguard.Codec {
	return jsonCodec{vanguard.JSONCodec{
		MarshalOptions:   protojson.MarshalOptions{Resolver: res},
		UnmarshalOptions: protojson.UnmarshalOptions{Resolver: res},
	}}
}

var _ vanguard.RESTCodec = jsonCodec{}

func (c jsonCodec) Unmarshal(data []byte, msg proto.Message) error {
	return badJSON(msg, c.JSONCodec.Unmarshal(data, msg))
}

func (c jsonCodec) UnmarshalField(data []byte, msg proto.Message, field protoreflect.FieldDescriptor) error {
	return badJSON(msg, c.JSONCodec.UnmarshalField(data, msg, field))
}

func badJSON(msg proto.Message, err error) error {
	if err == nil {
		return nil
	}
	return connect.NewError(connect.CodeInvalidArgument, &jsonError{name: msg.ProtoReflect().Descriptor().FullName(), err: err})
}

type jsonError struct {
	name protoreflect.FullName
	err  error
}

func (e *jsonError) Error() string {
	return "the request is not a valid " + string(e.name) + " in JSON: " + e.err.Error()
}
func (e *jsonError) Unwrap() error { return e.err }
