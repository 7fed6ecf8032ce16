package testenv

import "testing"

// SkipIfShort skips a long test under -short: one that runs real tools at
// length (a Debian build, a browser, Buildbot's own master or worker) or
// measures. Without -short it runs, under CI as elsewhere; .ci/run runs
// the tests without -short.
func SkipIfShort(tb testing.TB, what string) {
	tb.Helper()
	if testing.Short() {
		tb.Skipf("skipped under -short: %s", what)
	}
}
