package scheduler

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/kilnci/kiln/ci"
)

// Force is Buildbot's ForceScheduler: it starts builds on request, for the
// builders it lists, with the source and properties the request gives. The
// web UI's force form and the force API call it.
type Force struct {
	// Name identifies the scheduler ("force").
	Name string
	// Builders lists the builders it may start.
	Builders []string
	// Properties lists the custom properties a request may set, with their
	// defaults; a request's properties not listed here are refused.
	Properties map[string]string
	// Priority of the requests it submits.
	Priority int
}

var _ ci.Scheduler = (*Force)(nil)

// SchedulerName implements ci.Scheduler.
func (f *Force) SchedulerName() string { return f.Name }

// BuilderNames implements ci.Scheduler.
func (f *Force) BuilderNames() []string { return f.Builders }

// A ForceRequest is what a person asks Force for.
type ForceRequest struct {
	// Owner is who forces the build (a login), recorded as the "owner"
	// property.
	Owner string
	// Reason says why; "forced" if empty.
	Reason string
	// Builders selects some of the scheduler's builders; all if empty.
	Builders []string
	// The source to build; all optional.
	Repository, Branch, Revision, Project, Codebase string
	// Properties sets custom properties declared by the scheduler.
	Properties map[string]string
}

// ErrBadRequest is wrapped by errors about a force request that cannot be
// honoured as asked.
var ErrBadRequest = errors.New("bad force request")

// Force submits a buildset for the request and returns it.
func (f *Force) Force(ctx context.Context, m *ci.Master, r ForceRequest) (*ci.Buildset, error) {
	builders := r.Builders
	if len(builders) == 0 {
		builders = f.Builders
	}
	for _, b := range builders {
		if !slices.Contains(f.Builders, b) {
			return nil, fmt.Errorf("force %q: %w: builder %q is not one of this scheduler's builders", f.Name, ErrBadRequest, b)
		}
	}
	props := ci.Properties{}
	for k, v := range f.Properties {
		props.Set(k, v, ci.SourceForce)
	}
	for k, v := range r.Properties {
		if _, ok := f.Properties[k]; !ok {
			return nil, fmt.Errorf("force %q: %w: unknown property %q", f.Name, ErrBadRequest, k)
		}
		props.Set(k, v, ci.SourceForce)
	}
	reason := r.Reason
	if reason == "" {
		reason = "forced"
	}
	if r.Owner != "" {
		props.Set("owner", r.Owner, ci.SourceForce)
		reason = fmt.Sprintf("A build was forced by '%s': %s", r.Owner, reason)
	}
	props.Set("reason", r.Reason, ci.SourceForce)
	bs, _, err := m.Submit(ctx, ci.Submission{
		Builders: builders,
		Reason:   reason,
		SourceStamps: []ci.SourceStamp{{
			Codebase: r.Codebase, Repository: r.Repository, Branch: r.Branch, Revision: r.Revision, Project: r.Project,
		}},
		Properties: props,
		Priority:   f.Priority,
		Scheduler:  f.Name,
	})
	if err != nil {
		return nil, fmt.Errorf("force %q: %w", f.Name, err)
	}
	return bs, nil
}
