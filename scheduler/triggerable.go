package scheduler

import (
	"context"
	"fmt"
	"slices"

	"github.com/kilnci/kiln/ci"
)

// Triggerable is Buildbot's Triggerable scheduler: it builds when a build
// asks it to, through a Trigger step (steps.Trigger), with the source
// stamps and properties the step gives. The triggering build is recorded as
// the buildset's parent.
//
// A Triggerable keeps no state and is safe for concurrent use.
type Triggerable struct {
	// Name identifies the scheduler; Trigger steps name it.
	Name string
	// Builders lists the builders each buildset has a request for.
	Builders []string
	// Reason says why, for people. A "reason" property set by the step
	// takes precedence, as in Buildbot; by default "The Triggerable
	// scheduler named '<Name>' triggered this build".
	Reason string
	// Properties are given to the builds, with source "Scheduler"; the
	// properties the step sets override them.
	Properties map[string]any
	// Priority of the requests it submits.
	Priority int
}

var _ ci.TriggerableScheduler = (*Triggerable)(nil)

// SchedulerName implements ci.Scheduler.
func (t *Triggerable) SchedulerName() string { return t.Name }

// BuilderNames implements ci.Scheduler.
func (t *Triggerable) BuilderNames() []string { return t.Builders }

// Validate checks the configuration; the master calls it before starting.
func (t *Triggerable) Validate() error { return checkProperties(t.Properties) }

// Trigger implements ci.TriggerableScheduler: it submits a buildset for
// the request and returns it once stored.
func (t *Triggerable) Trigger(ctx context.Context, m *ci.Master, r ci.TriggerRequest) (*ci.Buildset, error) {
	reason := r.Reason
	if reason == "" {
		if v, ok := r.Properties["reason"].Value.(string); ok && v != "" {
			reason = v
		}
	}
	if reason == "" {
		reason = defaultReason(t.Reason, "Triggerable", t.Name)
	}
	sub := builds{name: t.Name, builders: t.Builders, reason: reason, properties: t.Properties, priority: t.Priority}.submission()
	sub.Properties.Update(r.Properties)
	sub.SourceStamps = slices.Clone(r.SourceStamps)
	sub.ParentBuildID = r.ParentBuildID
	bs, _, err := m.Submit(ctx, sub)
	if err != nil {
		return nil, fmt.Errorf("scheduler %q: trigger: %w", t.Name, err)
	}
	m.Logger().Info("scheduler: triggered", "scheduler", t.Name, "buildset", bs.ID, "parent_build", r.ParentBuildID)
	return bs, nil
}
