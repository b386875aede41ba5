package httpplugin

// Unlink undoes Link, so that each run of a test starts unlinked.
func Unlink() { linked.Store(nil) }
