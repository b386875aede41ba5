package etcd

import (
	"maps"
	"slices"

	"go.uber.org/zap"
)

// nopLogger silences the etcd client's own zap logging; the registry logs
// what matters (losses, recoveries, skipped values) through slog.
func nopLogger() *zap.Logger { return zap.NewNop() }

func sortedKeys(m map[string]string) []string { return slices.Sorted(maps.Keys(m)) }
