package ci

import "context"

// A StepFinishStore is a Store that records the end of a step and the end
// of its open logs in one transaction, with the start of the next step or
// the end of the build. The master uses it, when its store has it, instead
// of one FinishLog per log, an UpdateStep, and an AddStep or FinishBuild:
// a step's end then costs no commit of its own.
type StepFinishStore interface {
	// FinishStep finishes each log of logs as FinishLog does (appending
	// its Text and marking it complete), setting its First and Last, and
	// then stores the state of s as UpdateStep does, in one transaction:
	// when it returns an error, nothing was stored.
	FinishStep(ctx context.Context, s *StepRecord, logs []LogEnd) error
	// FinishStepAddStep records the end of prev as FinishStep does and
	// stores next as AddStep does (setting next.ID), in one transaction:
	// the end of a step and the start of the next cost one commit.
	FinishStepAddStep(ctx context.Context, prev *StepRecord, logs []LogEnd, next *StepRecord) error
	// FinishStepAndBuild records the end of s as FinishStep does and the
	// end of b as FinishBuild does, in one transaction, and returns the
	// results of the buildsets it completes (as BuildsetResultStore).
	FinishStepAndBuild(ctx context.Context, s *StepRecord, logs []LogEnd, b *Build, resubmit bool) ([]BuildsetResult, error)
}

// A LogEnd is the end of one log given to FinishStep: the log, its last
// lines (whole lines, or empty), and, once stored, the numbers of the
// first and last lines added (-1 when Text is empty).
type LogEnd struct {
	LogID       int64
	Text        string
	First, Last int
}
