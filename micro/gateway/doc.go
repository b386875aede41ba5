// Package gateway serves every service of a registry over HTTP: JSON by
// name, REST routes from google.api.http annotations, the Connect,
// gRPC-Web and gRPC protocols for browsers and other clients, and a
// dashboard. It learns each service's types by gRPC server reflection and
// calls it through a micro service's Dial: the same resolver, balancer,
// retries, TLS and client interceptors as any call of a service.
//
//	svc := micro.NewService(micro.WithName("gateway"))
//	_ = svc.Init()
//	gw, err := gateway.New(svc)
//	defer gw.Close()
//	http.ListenAndServe("127.0.0.1:8080", gw)
//
// The micro command runs one: micro gateway --address 127.0.0.1:8080.
//
// # Routes
//
//	POST /api/{service}/{method}      JSON by name (go-micro's API form)
//	/{service}/{pkg.Service}/{Method}  Connect, gRPC-Web, gRPC (base URL /{service})
//	/{service}/{annotated route}       REST, as the method's google.api.http option says
//	GET /                              the dashboard
//
// {service} is the name in the registry ("greeter"); {method} is named as
// micro call takes it: "Greeter.Hello", "greeter.Greeter/Hello" or
// "greeter.Greeter.Hello". A service whose registry name is "api" or "_"
// is reachable by JSON by name only.
//
// JSON by name answers a unary call with the response as JSON. A
// streaming method takes newline-delimited JSON requests in the body and
// answers with one JSON line per response (application/x-ndjson); an
// error after the first response ends the stream as a last line
// {"error":{"code":...,"message":...}}.
//
// # Calls
//
// A call's deadline is the request's Connect-Timeout-Ms or grpc-timeout
// header, else [WithTimeout] (default 30 s). The headers in
// [DefaultHeaders] (Authorization among them; [WithHeaders] to change the
// list) are passed to the service as metadata, no others. Bodies are
// limited to [WithBodyLimit] bytes. CORS is off unless [WithCORS] names
// origins. Every request is logged as one slog line. The answer's
// Micro-Node and Micro-Node-Address headers name the node that served it.
//
// # How
//
// The gateway follows the whole registry (one watch, re-listed after any
// error) and each node's gRPC health (one Watch stream per node): that is
// the dashboard's live view, and how an answer's node is named and an
// unknown service is a 404 without asking the registry. A service is
// mapped on its first request: its connection is svc.Dial's, and a
// [dynamic.Client] learns its descriptors by reflection; for the
// protocols a [vanguard] transcoder is built from them (a
// protoregistry.Files per service, which reflection filled). When a node
// of the service joins, what was learned is dropped and learned again at
// the next call, since the new node may run a new version.
//
// vanguard turns every protocol it takes (REST from the descriptors'
// google.api.http options, Connect, gRPC-Web, gRPC) into gRPC, and an
// in-process grpc.Server forwards each call, message by message and
// unchanged, to the service's connection. It was chosen over
// grpc-gateway's runtime because it builds the routes from descriptors at
// run time, which is what a gateway that knows no service in advance
// has, where grpc-gateway's are generated code per service; and because
// it speaks the browser protocols too. JSON by name is the gateway's own,
// on the [dynamic.Client]: one decode and one call, no transcoding.
//
// vanguard serves no REST route for a server-streaming method; such
// methods are streamed by JSON by name and by Connect.
//
// # Errors
//
// Errors are gRPC statuses mapped to HTTP statuses as Connect (and
// grpc-gateway) map them, with a Connect error body
// {"code":"not_found","message":"..."}: invalid JSON 400, an unknown
// service or method 404, a body over the limit 413, no healthy node 503,
// a deadline passed 504, a service without reflection 501 naming it.
//
// [vanguard]: https://pkg.go.dev/connectrpc.com/vanguard
package gateway
