package ci

import "context"

// A TriggerableScheduler starts builds when a build asks it to, through a
// Trigger step (Buildbot's Triggerable scheduler; scheduler.Triggerable).
type TriggerableScheduler interface {
	Scheduler
	// Trigger submits a buildset for the request and returns it.
	Trigger(ctx context.Context, m *Master, r TriggerRequest) (*Buildset, error)
}

// A TriggerRequest is what a Trigger step asks a triggerable scheduler for.
type TriggerRequest struct {
	// SourceStamps say what to build (the triggering build's source,
	// usually with its got_revision).
	SourceStamps []SourceStamp
	// Properties are given to the triggered builds.
	Properties Properties
	// ParentBuildID is the triggering build.
	ParentBuildID int64
	// Reason says why, for people.
	Reason string
}

// Scheduler returns the configured scheduler called name.
func (m *Master) Scheduler(name string) (Scheduler, bool) {
	for _, s := range m.cfg.Schedulers {
		if s.SchedulerName() == name {
			return s, true
		}
	}
	return nil, false
}
