package ci

import "context"

// A BuildsetResultStore is a Store whose FinishBuild can also give the
// results of the buildsets it completes. The master uses it, when its
// store has it, to tell subscribers of a completed buildset's results
// without reading the buildset back after the build.
type BuildsetResultStore interface {
	// FinishBuildResults is FinishBuild, giving the results of each
	// buildset it completes with its ID, in the same order.
	FinishBuildResults(ctx context.Context, b *Build, resubmit bool) ([]BuildsetResult, error)
}

// A BuildsetResult is the results of a buildset that completed.
type BuildsetResult struct {
	ID      int64
	Results Result
}
