//go:build !unix

package sqlite

// checkAccess leaves the checks to SQLite where faccessat is missing.
func checkAccess(path string) error { return nil }
