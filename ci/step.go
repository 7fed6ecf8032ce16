package ci

import (
	"context"
)

// A Step is one stage of a build: check out the source, run a command,
// upload a file. Builders list their steps in order (Buildbot's build
// factory); the master runs them one after the other for each build.
//
// Run does the step's work through s: it sends remote commands to the
// worker (s.RunCommand), writes logs, sets properties. It returns how the
// step went as a Result: a command that ran and failed is FAILURE with a nil
// error. An error means the framework could not run the step at all; the
// step then ends as EXCEPTION, or RETRY if the error wraps ErrWorkerLost.
// When ctx ends (the build was stopped), Run should return promptly; its
// result is then taken as CANCELLED.
//
// A Step value is configuration: it is shared by every build of its builder,
// possibly at the same time, and Run must not change it. Per-build state
// belongs in local variables or in s.
type Step interface {
	// Options returns the step's name and flow options.
	Options() StepOptions
	Run(ctx context.Context, s *StepRun) (Result, error)
}

// StepOptions are the options every step has: its name and Buildbot's flow
// options, which say what the step's result does to the build. Step types
// embed it.
//
// The zero value behaves as Buildbot's defaults: a FAILURE fails the build
// (flunkOnFailure) but later steps still run; WARNINGS make the build
// WARNINGS (warnOnWarnings); EXCEPTION, RETRY and CANCELLED stop the build.
// In Buildbot's terms:
//
//	haltOnFailure=True                       HaltOnFailure: true
//	flunkOnFailure=False, warnOnFailure=True  WarnOnFailure: true
//	flunkOnFailure=False                      IgnoreFailure: true
//	warnOnWarnings=False                      IgnoreWarnings: true
//	flunkOnWarnings=True                      FlunkOnWarnings: true
//	alwaysRun=True                            AlwaysRun: true
//	doStepIf=fn                               RunIf: fn
//	hideStepIf=fn                             HideIf: fn
type StepOptions struct {
	// Name is shown in the UI and logs; a step type gives a default. Names
	// repeated within a build get a suffix ("_1", "_2").
	Name string
	// Description is the step's state while it runs ("compiling"); the
	// step type's own description if empty.
	Description string
	// DescriptionDone is the step's state once finished ("compile").
	DescriptionDone string

	// HaltOnFailure stops the build after this step fails: later steps run
	// only if they have AlwaysRun.
	HaltOnFailure bool
	// WarnOnFailure makes a failure of this step count as WARNINGS for the
	// build.
	WarnOnFailure bool
	// IgnoreFailure makes a failure of this step not count for the build.
	IgnoreFailure bool
	// FlunkOnWarnings makes WARNINGS of this step fail the build.
	FlunkOnWarnings bool
	// IgnoreWarnings makes WARNINGS of this step not count for the build.
	IgnoreWarnings bool
	// AlwaysRun runs the step even when an earlier step halted the build
	// or the build was stopped.
	AlwaysRun bool
	// RunIf, when set, decides at build time whether the step runs; a step
	// that does not run is SKIPPED. An error makes the step EXCEPTION.
	RunIf func(ctx context.Context, s *StepRun) (bool, error)
	// HideIf, when set, decides once the step is finished whether the UI
	// hides it.
	HideIf func(result Result, s *StepRun) bool
	// Locks are taken, all at once, before the step runs and released when
	// it ends (see Lock).
	Locks []LockAccess
}

// Options returns o, so that types embedding StepOptions implement the
// first half of Step.
func (o StepOptions) Options() StepOptions { return o }

// StepFunc adapts a function to a Step named "step" with default options;
// wrap it with WithOptions to name it.
type StepFunc func(ctx context.Context, s *StepRun) (Result, error)

// Options implements Step.
func (f StepFunc) Options() StepOptions { return StepOptions{Name: "step"} }

// Run implements Step.
func (f StepFunc) Run(ctx context.Context, s *StepRun) (Result, error) { return f(ctx, s) }

// WithOptions returns step with its options replaced by opts (an empty
// name keeps the step's own).
func WithOptions(opts StepOptions, step Step) Step {
	if opts.Name == "" {
		opts.Name = step.Options().Name
	}
	return optionedStep{opts: opts, step: step}
}

type optionedStep struct {
	opts StepOptions
	step Step
}

func (o optionedStep) Options() StepOptions { return o.opts }

func (o optionedStep) StartLogs() []Log {
	if sl, ok := o.step.(StartLogger); ok {
		return sl.StartLogs()
	}
	return nil
}

func (o optionedStep) Run(ctx context.Context, s *StepRun) (Result, error) {
	return o.step.Run(ctx, s)
}

func (o optionedStep) Validate() error {
	if v, ok := o.step.(validator); ok {
		return v.Validate()
	}
	return nil
}

func (o optionedStep) ValidateConfig(c *MasterConfig) error {
	if v, ok := o.step.(configValidator); ok {
		return v.ValidateConfig(c)
	}
	return nil
}

// buildResult returns what a step's result does to the build's result so
// far, and whether the build must stop running ordinary steps, following
// Buildbot's computeResultAndTermination.
func buildResult(o StepOptions, step, prev Result) (Result, bool) {
	possible := step
	terminate := false
	switch step {
	case Failure:
		switch {
		case o.IgnoreFailure:
			possible = Success
		case o.WarnOnFailure:
			possible = Warnings
		}
		terminate = o.HaltOnFailure
	case Warnings:
		switch {
		case o.FlunkOnWarnings:
			possible = Failure
		case o.IgnoreWarnings:
			possible = Success
		}
	case Exception, Retry, Cancelled:
		terminate = true
	}
	return Worst(prev, possible), terminate
}
