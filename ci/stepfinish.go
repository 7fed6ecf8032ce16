package ci

import "context"

// A StepFinishStore is a Store that records the end of a step and the end
// of its open logs in one transaction with the start of the next step or
// the end of the build. The master uses it, when its store has it, instead
// of one FinishLog per log, an UpdateStep, and an AddStep or FinishBuild:
// a step's end then costs no commit of its own.
//
// The end of a step is: each log of logs finished as FinishLog does
// (appending its Text and marking it complete), its First and Last set,
// and then the state of the step stored as UpdateStep does. Either method
// stores everything or, when it returns an error, nothing.
type StepFinishStore interface {
	// FinishStepAddStep records the end of prev and stores next as
	// AddStep does (setting next.ID), in one transaction.
	FinishStepAddStep(ctx context.Context, prev *StepRecord, logs []LogEnd, next *StepRecord) error
	// FinishStepAndBuild records the end of s and the end of b as
	// FinishBuild does, in one transaction, and returns the results of the
	// buildsets it completes (as BuildsetResultStore).
	FinishStepAndBuild(ctx context.Context, s *StepRecord, logs []LogEnd, b *Build, resubmit bool) ([]BuildsetResult, error)
}

// A LogEnd is the end of one log given to a StepFinishStore: the log, its
// last lines (whole lines, or empty), and, once stored, the numbers of the
// first and last lines added (-1 when Text is empty).
type LogEnd struct {
	LogID       int64
	Text        string
	First, Last int
}

// A StepLogStore is a Store that stores the start of a step with the logs
// the step adds first (a command's stdio), in one transaction. The master
// uses it, when its store has it, for a step that says which logs it adds
// as it starts (a StartLogger): those logs then cost no commit of their
// own.
type StepLogStore interface {
	// AddStepLogs stores s as AddStep does (setting s.ID), and then each
	// of logs as AddLog does, with s.ID as its StepID; with prev not nil,
	// it first records the end of prev (and of its logs of ends) as
	// FinishStepAddStep does. It stores everything or, when it returns an
	// error, nothing.
	AddStepLogs(ctx context.Context, prev *StepRecord, ends []LogEnd, s *StepRecord, logs []*Log) error
}

// A StartLogger is a Step that adds logs as soon as it runs: StartLogs
// returns their names and types (LogStream if empty), in the order it adds
// them. With a StepLogStore, the master stores them with the step's start,
// and the step's AddLog of each name and type returns the log stored then.
// A step that runs only if RunIf says so has its logs added when it adds
// them.
type StartLogger interface {
	StartLogs() []Log
}
