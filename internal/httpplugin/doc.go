// Package httpplugin is the http broker as a plugin, linked into a program
// only when something there can use it.
//
// The http broker is the default, so plugins/builtin registers the name at
// init, but its code (an HTTP server and client, and with them most of TLS:
// about 0.6 MB of the binary, and memory to match) is reached only through
// Link. Package micro calls Link on a service's first use of its broker
// (Publish, RegisterSubscriber, Broker), and plugins/all calls it at init;
// the linker leaves the broker out of a program that does neither.
package httpplugin
