// Package e2e has no code of its own: its tests run microgrpc nodes as
// separate processes (the test binary, run again as a node) and call them
// the way users do, to check what only real processes show: a node frozen
// with SIGSTOP, killed, or restarted.
package e2e
