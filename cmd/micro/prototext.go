package main

import (
	"fmt"
	"strings"

	"google.golang.org/protobuf/reflect/protoreflect"
)

// Descriptors as proto source, the way grpcurl describe prints them:
// enough to write a request by hand. Options and comments are left out
// (servers built from generated Go code send no comments anyway).

// serviceProto prints a service definition.
func serviceProto(sd protoreflect.ServiceDescriptor) string {
	var b strings.Builder
	fmt.Fprintf(&b, "service %s {\n", sd.Name())
	for i := range sd.Methods().Len() {
		m := sd.Methods().Get(i)
		in, out := "", ""
		if m.IsStreamingClient() {
			in = "stream "
		}
		if m.IsStreamingServer() {
			out = "stream "
		}
		fmt.Fprintf(&b, "  rpc %s ( %s.%s ) returns ( %s.%s );\n", m.Name(), in, m.Input().FullName(), out, m.Output().FullName())
	}
	b.WriteString("}\n")
	return b.String()
}

// messageProto prints a message, with its nested messages and enums.
func messageProto(md protoreflect.MessageDescriptor) string {
	var b strings.Builder
	writeMessage(&b, md, "")
	return b.String()
}

func writeMessage(b *strings.Builder, md protoreflect.MessageDescriptor, indent string) {
	fmt.Fprintf(b, "%smessage %s {\n", indent, md.Name())
	in := indent + "  "
	for i := range md.Messages().Len() {
		if nested := md.Messages().Get(i); !nested.IsMapEntry() {
			writeMessage(b, nested, in)
		}
	}
	for i := range md.Enums().Len() {
		writeEnum(b, md.Enums().Get(i), in)
	}
	fields := md.Fields()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		if od := fd.ContainingOneof(); od != nil && !od.IsSynthetic() {
			// A oneof's fields are printed together, where its first is.
			if od.Fields().Get(0) != fd {
				continue
			}
			fmt.Fprintf(b, "%soneof %s {\n", in, od.Name())
			for j := range od.Fields().Len() {
				f := od.Fields().Get(j)
				fmt.Fprintf(b, "%s  %s %s = %d;\n", in, fieldType(f), f.Name(), f.Number())
			}
			fmt.Fprintf(b, "%s}\n", in)
			continue
		}
		fmt.Fprintf(b, "%s%s%s %s = %d;\n", in, label(fd), fieldType(fd), fd.Name(), fd.Number())
	}
	fmt.Fprintf(b, "%s}\n", indent)
}

// enumProto prints an enum.
func enumProto(ed protoreflect.EnumDescriptor) string {
	var b strings.Builder
	writeEnum(&b, ed, "")
	return b.String()
}

func writeEnum(b *strings.Builder, ed protoreflect.EnumDescriptor, indent string) {
	fmt.Fprintf(b, "%senum %s {\n", indent, ed.Name())
	for i := range ed.Values().Len() {
		v := ed.Values().Get(i)
		fmt.Fprintf(b, "%s  %s = %d;\n", indent, v.Name(), v.Number())
	}
	fmt.Fprintf(b, "%s}\n", indent)
}

func label(fd protoreflect.FieldDescriptor) string {
	switch {
	case fd.IsMap():
		return ""
	case fd.Cardinality() == protoreflect.Repeated:
		return "repeated "
	case fd.Cardinality() == protoreflect.Required:
		return "required "
	case fd.HasOptionalKeyword():
		return "optional "
	}
	return ""
}

func fieldType(fd protoreflect.FieldDescriptor) string {
	if fd.IsMap() {
		return fmt.Sprintf("map<%s, %s>", fieldType(fd.MapKey()), fieldType(fd.MapValue()))
	}
	switch fd.Kind() {
	case protoreflect.MessageKind, protoreflect.GroupKind:
		return "." + string(fd.Message().FullName())
	case protoreflect.EnumKind:
		return "." + string(fd.Enum().FullName())
	}
	return fd.Kind().String()
}

// typeDef is one top-level message or enum to print.
type typeDef struct {
	Name  string `json:"name"`
	Kind  string `json:"kind"` // message or enum
	Proto string `json:"proto"`
}

// referencedTypes returns the messages and enums a set of messages uses,
// themselves included, each once, as top-level definitions (a nested type
// is printed inside the message that holds it), in the order they are
// first met. Well-known types (google/protobuf/...) are left out.
func referencedTypes(roots []protoreflect.MessageDescriptor) []typeDef {
	var out []typeDef
	seen := map[protoreflect.FullName]bool{}
	var visit func(d protoreflect.Descriptor)
	visit = func(d protoreflect.Descriptor) {
		top := topLevel(d)
		if seen[top.FullName()] || strings.HasPrefix(top.ParentFile().Path(), "google/protobuf/") {
			return
		}
		seen[top.FullName()] = true
		switch t := top.(type) {
		case protoreflect.MessageDescriptor:
			out = append(out, typeDef{Name: string(t.FullName()), Kind: "message", Proto: messageProto(t)})
			walkFields(t, visit)
		case protoreflect.EnumDescriptor:
			out = append(out, typeDef{Name: string(t.FullName()), Kind: "enum", Proto: enumProto(t)})
		}
	}
	for _, r := range roots {
		visit(r)
	}
	return out
}

// walkFields calls visit for the types of md's fields and of its nested
// messages' fields.
func walkFields(md protoreflect.MessageDescriptor, visit func(protoreflect.Descriptor)) {
	for i := range md.Fields().Len() {
		fd := md.Fields().Get(i)
		if fd.IsMap() {
			fd = fd.MapValue()
		}
		switch {
		case fd.Message() != nil:
			visit(fd.Message())
		case fd.Enum() != nil:
			visit(fd.Enum())
		}
	}
	for i := range md.Messages().Len() {
		walkFields(md.Messages().Get(i), visit)
	}
}

// topLevel returns the outermost message holding d, or d.
func topLevel(d protoreflect.Descriptor) protoreflect.Descriptor {
	for {
		p, ok := d.Parent().(protoreflect.MessageDescriptor)
		if !ok {
			return d
		}
		d = p
	}
}
