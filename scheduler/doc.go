// Package scheduler has the schedulers that decide when builds are
// requested: Buildbot's schedulers as Go values for
// ci.MasterConfig.Schedulers.
//
//	Kiln          Buildbot                 builds when
//	Force         ForceScheduler           a person asks (web form, API)
//	AnyBranch     AnyBranchScheduler       changes arrive, on any branch
//	SingleBranch  SingleBranchScheduler    changes arrive on one branch
//	Periodic      Periodic                 every so often
//	Nightly       Nightly                  at times given as in cron
//	Triggerable   Triggerable              a build's Trigger step asks
//	Dependent     Dependent                another scheduler's buildset succeeds
//
// ChangeFilter selects the changes a scheduler reacts to (Buildbot's
// ChangeFilter). Every scheduler submits its buildsets through
// ci.Master.Submit, naming itself as the buildsets' scheduler (the builds'
// "scheduler" property).
//
// # Changes: AnyBranch and SingleBranch
//
// AnyBranch and SingleBranch are told of each change the master receives
// (ci.ChangeListener), before the change is acknowledged to whoever sent
// it. A change that passes the ChangeFilter and is important (see
// FileIsImportant) is built at once, or, with a TreeStableTimer, once no
// other change arrived for that long: AnyBranch keeps one timer per
// branch (with codebase, repository and project), SingleBranch one for
// all. The builds get the change's properties (source "Change"), and the
// buildset's source stamp links the changes built.
//
// # Times: Periodic and Nightly
//
// Periodic builds every Interval; Nightly at the times of a cron
// specification in a time zone (see Nightly for the dialect and the
// handling of daylight saving time). With OnlyIfChanged they build only
// when important changes arrived since their last build. Their timers use
// the master's clock (ci.Master.Clock), which tests replace with
// citest.Clock.
//
// # Builds: Triggerable and Dependent
//
// Triggerable builds when a steps.Trigger step of a running build asks it
// to; Dependent when a buildset of its Upstream scheduler completes with
// SUCCESS or WARNINGS.
//
// # People: Force
//
// Force builds on request, with typed parameters (StringParam, IntParam,
// BoolParam, ChoiceParam) that a form lists (Force.ForceParams) and that
// Force.Force checks, refusing a bad request with an error wrapping
// ci.ErrInvalidForce. Force implements ci.ForceScheduler, the interface
// the web UI draws its force forms from; a scheduler of one's own that
// implements it gets a form too.
//
// # State and restarts
//
// What a scheduler must remember across restarts is in the master's store
// (ci.StateStore), under the object "scheduler:<Name>", one JSON document
// per scheduler: "tree-stable" (AnyBranch, SingleBranch: the changes
// waiting on a timer and when each timer started), "timed" (Periodic,
// Nightly: the time of the last build and the changes kept for the next)
// and "dependent" (Dependent: how far it looked and the upstream buildsets
// it waits for). A change waiting on a timer is stored before OnChange
// returns. Renaming a scheduler starts it afresh.
//
// Before a scheduler submits a buildset whose cause it consumes (stable
// changes, a scheduled time, an upstream success), it records in the same
// document what it is about to submit, under a token that the buildset
// then carries as its ExternalID. A restart that finds such a record looks
// for the buildset and submits it only if it is missing: a stop or a crash
// at any point neither loses that build nor makes it twice.
//
// # Configuration checks
//
// Each scheduler has a Validate method, which the master calls (through
// ci.MasterConfig.Validate) before it starts: negative timers, invalid
// cron specifications (naming the field and the token), unknown time
// zones, regular expressions that do not compile and invalid parameters
// are reported there, one line each. Dependent also has ValidateConfig,
// which checks that its upstream is a scheduler of the configuration.
//
// Schedulers with state (all but Force and Triggerable) serve one master
// at a time; a configuration must not be changed once its master runs.
package scheduler
