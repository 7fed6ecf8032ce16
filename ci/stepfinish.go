package ci

import "context"

// A StepFinishStore is a Store that records the end of a step and the end
// of its open logs in one transaction. The master uses it, when its store
// has it, instead of one FinishLog per log and an UpdateStep: a step's end
// then costs one commit.
type StepFinishStore interface {
	// FinishStep finishes each log of logs as FinishLog does (appending
	// its Text and marking it complete), setting its First and Last, and
	// then stores the state of s as UpdateStep does, in one transaction:
	// when it returns an error, nothing was stored.
	FinishStep(ctx context.Context, s *StepRecord, logs []LogEnd) error
}

// A LogEnd is the end of one log given to FinishStep: the log, its last
// lines (whole lines, or empty), and, once stored, the numbers of the
// first and last lines added (-1 when Text is empty).
type LogEnd struct {
	LogID       int64
	Text        string
	First, Last int
}
