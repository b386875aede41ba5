package memory

import "github.com/microgrpc/microgrpc/resolver"

// WatcherCount reports how many watchers reg still holds, so that tests can
// check that stopped watchers are forgotten.
func WatcherCount(reg resolver.Registry) int {
	return reg.(*registry).watchers.Len()
}
