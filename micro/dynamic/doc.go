// Package dynamic calls gRPC methods by name, without generated code: the
// microgrpc counterpart of go-micro's
// client.NewRequest("greeter", "Greeter.Hello", req).
//
// A [Client] wraps any connection (a *grpc.ClientConn from micro's
// Service.Dial, or from grpc.NewClient) and learns each method's request
// and response types from the server itself, through gRPC server
// reflection: grpc.reflection.v1, falling back to v1alpha for older
// servers. What it learned is kept for the Client's life, so a method is
// looked up once per Client, and every later call costs what a call with
// generated code costs plus the dynamic message's encoding.
//
//	greeter := dynamic.NewClient(svc.Dial("greeter"))
//	rsp, err := greeter.InvokeJSON(ctx, "Greeter.Hello", []byte(`{"name":"John"}`))
//	// rsp is {"msg":"Hello John"}
//
// Messages are [dynamicpb] messages, and JSON is protobuf's JSON mapping
// ([protojson]), printed compact and stable (no random spaces). Methods of
// every kind can be called: [Client.Invoke] and [Client.InvokeJSON] for
// unary methods, [Client.NewStream] for the three streaming kinds.
//
// # Method names
//
// A method can be named as gRPC sends it ("/greeter.Greeter/Hello"), without
// the leading slash ("greeter.Greeter/Hello"), with a dot
// ("greeter.Greeter.Hello"), or go-micro's way, with the service's short
// name ("Greeter.Hello", "Greeter/Hello") when exactly one service of the
// server has that short name.
//
// # Errors
//
// Errors are gRPC status errors with the code that says what went wrong:
// NotFound for a service or method the server does not have (the message
// lists what it has), InvalidArgument for a malformed name, a request that
// is not valid JSON for the method's request type, or a message of the
// wrong type (these also match [ErrBadRequest], which tells them from the
// server's own InvalidArgument), Unimplemented when the server serves no
// reflection. The errors of the calls themselves are the server's,
// unchanged.
package dynamic
