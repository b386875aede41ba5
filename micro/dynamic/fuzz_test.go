package dynamic

import (
	"encoding/json"
	"errors"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// richFile is a service whose request has a field of every kind protojson
// treats specially: scalars of each width, bytes, enums, repeated, maps,
// oneofs, recursion, and the well-known types (Any, Timestamp, Duration,
// Struct, Value, ListValue, FieldMask, wrappers, Empty).
func richFile(tb testing.TB) *protoregistry.Files {
	tb.Helper()
	files := new(protoregistry.Files)
	for _, fd := range []protoreflect.FileDescriptor{
		anypb.File_google_protobuf_any_proto, durationpb.File_google_protobuf_duration_proto,
		emptypb.File_google_protobuf_empty_proto, fieldmaskpb.File_google_protobuf_field_mask_proto,
		structpb.File_google_protobuf_struct_proto, timestamppb.File_google_protobuf_timestamp_proto,
		wrapperspb.File_google_protobuf_wrappers_proto,
	} {
		if err := files.RegisterFile(fd); err != nil {
			tb.Fatal(err)
		}
	}
	opt := descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL.Enum()
	rep := descriptorpb.FieldDescriptorProto_LABEL_REPEATED.Enum()
	field := func(name string, num int32, label *descriptorpb.FieldDescriptorProto_Label, typ descriptorpb.FieldDescriptorProto_Type, typeName string) *descriptorpb.FieldDescriptorProto {
		f := &descriptorpb.FieldDescriptorProto{Name: proto.String(name), JsonName: proto.String(name), Number: proto.Int32(num), Label: label, Type: typ.Enum()}
		if typeName != "" {
			f.TypeName = proto.String(typeName)
		}
		return f
	}
	const (
		tString  = descriptorpb.FieldDescriptorProto_TYPE_STRING
		tBytes   = descriptorpb.FieldDescriptorProto_TYPE_BYTES
		tInt64   = descriptorpb.FieldDescriptorProto_TYPE_INT64
		tUint64  = descriptorpb.FieldDescriptorProto_TYPE_UINT64
		tSint32  = descriptorpb.FieldDescriptorProto_TYPE_SINT32
		tFixed32 = descriptorpb.FieldDescriptorProto_TYPE_FIXED32
		tInt32   = descriptorpb.FieldDescriptorProto_TYPE_INT32
		tDouble  = descriptorpb.FieldDescriptorProto_TYPE_DOUBLE
		tFloat   = descriptorpb.FieldDescriptorProto_TYPE_FLOAT
		tBool    = descriptorpb.FieldDescriptorProto_TYPE_BOOL
		tEnum    = descriptorpb.FieldDescriptorProto_TYPE_ENUM
		tMessage = descriptorpb.FieldDescriptorProto_TYPE_MESSAGE
	)
	oneof := func(f *descriptorpb.FieldDescriptorProto) *descriptorpb.FieldDescriptorProto {
		f.OneofIndex = proto.Int32(0)
		return f
	}
	fdp := &descriptorpb.FileDescriptorProto{
		Name:    proto.String("fuzz/rich.proto"),
		Package: proto.String("fuzz"),
		Syntax:  proto.String("proto3"),
		Dependency: []string{"google/protobuf/any.proto", "google/protobuf/duration.proto", "google/protobuf/empty.proto",
			"google/protobuf/field_mask.proto", "google/protobuf/struct.proto", "google/protobuf/timestamp.proto", "google/protobuf/wrappers.proto"},
		EnumType: []*descriptorpb.EnumDescriptorProto{{Name: proto.String("Kind"), Value: []*descriptorpb.EnumValueDescriptorProto{
			{Name: proto.String("KIND_UNSPECIFIED"), Number: proto.Int32(0)}, {Name: proto.String("KIND_A"), Number: proto.Int32(1)}}}},
		MessageType: []*descriptorpb.DescriptorProto{{
			Name: proto.String("Rich"),
			Field: []*descriptorpb.FieldDescriptorProto{
				field("s", 1, opt, tString, ""), field("b", 2, opt, tBytes, ""), field("i64", 3, opt, tInt64, ""),
				field("u64", 4, opt, tUint64, ""), field("si", 5, opt, tSint32, ""), field("fx", 6, opt, tFixed32, ""),
				field("d", 7, opt, tDouble, ""), field("f", 8, opt, tFloat, ""), field("ok", 9, opt, tBool, ""),
				field("kind", 10, opt, tEnum, ".fuzz.Kind"), field("rs", 11, rep, tString, ""), field("ri", 12, rep, tInt32, ""),
				field("m", 13, rep, tMessage, ".fuzz.Rich.MEntry"), field("child", 14, opt, tMessage, ".fuzz.Rich"),
				oneof(field("os", 15, opt, tString, "")), oneof(field("oi", 16, opt, tInt32, "")),
				field("any", 17, opt, tMessage, ".google.protobuf.Any"), field("ts", 18, opt, tMessage, ".google.protobuf.Timestamp"),
				field("dur", 19, opt, tMessage, ".google.protobuf.Duration"), field("st", 20, opt, tMessage, ".google.protobuf.Struct"),
				field("v", 21, opt, tMessage, ".google.protobuf.Value"), field("lv", 22, opt, tMessage, ".google.protobuf.ListValue"),
				field("fm", 23, opt, tMessage, ".google.protobuf.FieldMask"), field("w", 24, opt, tMessage, ".google.protobuf.Int64Value"),
				field("e", 25, opt, tMessage, ".google.protobuf.Empty"), field("kinds", 26, rep, tEnum, ".fuzz.Kind"),
			},
			NestedType: []*descriptorpb.DescriptorProto{{
				Name:    proto.String("MEntry"),
				Field:   []*descriptorpb.FieldDescriptorProto{field("key", 1, opt, tString, ""), field("value", 2, opt, tMessage, ".fuzz.Rich")},
				Options: &descriptorpb.MessageOptions{MapEntry: proto.Bool(true)},
			}},
			OneofDecl: []*descriptorpb.OneofDescriptorProto{{Name: proto.String("pick")}},
		}},
		Service: []*descriptorpb.ServiceDescriptorProto{{Name: proto.String("Svc"), Method: []*descriptorpb.MethodDescriptorProto{
			{Name: proto.String("Call"), InputType: proto.String(".fuzz.Rich"), OutputType: proto.String(".fuzz.Rich")}}}},
	}
	fd, err := protodesc.NewFile(fdp, files)
	if err != nil {
		tb.Fatal(err)
	}
	if err := files.RegisterFile(fd); err != nil {
		tb.Fatal(err)
	}
	return files
}

// FuzzRequestJSON feeds the JSON a user gives `micro call` (or
// InvokeJSON, or Stream.SendJSON) to the parsing into the method's
// request type, as learned through reflection: it fails only with
// ErrBadRequest (InvalidArgument), and what it accepts can be sent (it
// marshals as protobuf) and prints as compact JSON that parses back to the
// same message.
func FuzzRequestJSON(f *testing.F) {
	for _, js := range []string{
		`{}`, `{"s":"x","b":"AAE=","i64":"-9223372036854775808","u64":18446744073709551615,"si":-1,"fx":4294967295}`,
		`{"d":"NaN","f":"-Infinity","ok":true,"kind":"KIND_A","kinds":[1,"KIND_A",7],"rs":["a"],"ri":[1,2]}`,
		`{"m":{"k":{"s":"v","m":{"":{}}}},"child":{"child":{"child":{}}},"os":"one"}`, `{"os":"one","oi":2}`,
		`{"any":{"@type":"type.googleapis.com/fuzz.Rich","s":"in any"}}`,
		`{"any":{"@type":"type.googleapis.com/google.protobuf.Duration","value":"1.5s"}}`,
		`{"any":{"@type":"type.googleapis.com/unknown.Type"}}`,
		`{"ts":"1970-01-01T00:00:00Z","dur":"-315576000000s","fm":"a.b,cD","w":"12","e":{}}`,
		`{"st":{"a":[1,{"b":null}]},"v":"x","lv":[1,"2",[],{}]}`, `{"v":null}`, `{"s":"\ud800"}`, `{"x":1}`,
		`{"s":1}`, `[]`, `null`, `{"s":"a"} {"s":"b"}`, `{"ts":"10000-01-01T00:00:00Z"}`,
	} {
		f.Add([]byte(js))
	}
	files := richFile(f)
	d, err := files.FindDescriptorByName("fuzz.Svc.Call")
	if err != nil {
		f.Fatal(err)
	}
	md := d.(protoreflect.MethodDescriptor)
	c := NewClient(nil)
	c.snap.Store(newSnapshot(files))
	f.Fuzz(func(t *testing.T, js []byte) {
		m, err := c.unmarshal(md, js)
		if err != nil {
			if !errors.Is(err, ErrBadRequest) || status.Code(err) != codes.InvalidArgument {
				t.Fatalf("unmarshal(%q) = %v; want ErrBadRequest, InvalidArgument", js, err)
			}
			return
		}
		if _, err := proto.Marshal(m); err != nil {
			t.Fatalf("request %q parsed but cannot be sent: %v", js, err)
		}
		out, err := c.marshal(md, m)
		if err != nil {
			t.Fatalf("request %q parsed but does not print: %v", js, err)
		}
		if !json.Valid(out) {
			t.Fatalf("printed %q: not JSON", out)
		}
		m2, err := c.unmarshal(md, out)
		if err != nil {
			t.Fatalf("printed %q (from %q) does not parse back: %v", out, js, err)
		}
		opts := proto.MarshalOptions{Deterministic: true}
		b1, _ := opts.Marshal(m)
		b2, _ := opts.Marshal(m2)
		if string(b1) != string(b2) {
			t.Fatalf("%q printed as %q parses to another message", js, out)
		}
	})
}
