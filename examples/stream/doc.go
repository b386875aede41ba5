// Package stream holds the test of the streaming example: the greeter
// server and a client making server, client and bidirectional streaming
// calls through svc.Dial, as separate processes.
package stream
