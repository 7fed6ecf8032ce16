package scheduler

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/kilnci/kiln/ci"
)

// DefaultForceReason is the reason of a forced build whose request gives
// none, Buildbot's default.
const DefaultForceReason = "force build"

// Force is Buildbot's ForceScheduler: it starts builds on request, for the
// builders it lists, with the source and properties the request gives. It
// is a ci.ForceScheduler: the web UI's force form shows its parameters
// (ForceParams) and the force API calls Force.
//
// The source fields (Reason, Branch, Revision, Repository, Project) are
// StringParams: editable by default, with no default value (Reason's is
// DefaultForceReason); Hidden leaves one out of the form, Fixed imposes its
// Default. Properties lists the custom properties a request may set, each a
// typed parameter:
//
//	&scheduler.Force{
//		Name:     "force",
//		Builders: []string{"build"},
//		Reason:   scheduler.StringParam{Required: true},
//		Branch:   scheduler.StringParam{Default: "master", Regexp: `[\w./-]+`},
//		Project:  scheduler.StringParam{Default: "ideascube", Fixed: true},
//		Properties: []scheduler.Param{
//			scheduler.ChoiceParam{Name: "dist", Choices: []string{"jessie", "stretch"}, Default: "jessie"},
//			scheduler.IntParam{Name: "jobs", Label: "Parallel jobs", Default: 2},
//			scheduler.BoolParam{Name: "clean"},
//		},
//	}
//
// Force checks every value of a request and refuses it, storing nothing,
// with an error wrapping ci.ErrInvalidForce that names each parameter at
// fault.
// A Force is safe for concurrent use.
type Force struct {
	// Name identifies the scheduler ("force").
	Name string
	// Builders lists the builders it may start.
	Builders []string
	// Label is what the form's button says; the name if empty.
	Label string

	// Reason is the reason field; its Default is DefaultForceReason if
	// empty and not Required. Its value is the "reason" property.
	Reason StringParam
	// Branch, Revision, Repository and Project are the fields of the
	// source stamp to build (empty: the steps' defaults).
	Branch     StringParam
	Revision   StringParam
	Repository StringParam
	Project    StringParam
	// Codebase is the codebase of the source stamp ("" by default).
	Codebase string

	// Properties lists the custom properties a request may set; a
	// request's properties not listed here are refused.
	Properties []Param
	// Priority of the requests it submits.
	Priority int
}

var _ ci.ForceScheduler = (*Force)(nil)

// SchedulerName implements ci.Scheduler.
func (f *Force) SchedulerName() string { return f.Name }

// BuilderNames implements ci.Scheduler.
func (f *Force) BuilderNames() []string { return f.Builders }

// reserved are the property names a custom parameter may not take: the
// form's own fields and what the master sets.
var reserved = []string{"owner", "reason", "branch", "revision", "repository", "project", "codebase",
	"scheduler", "buildername", "buildnumber", "workername", "builddir"}

// sourceParams returns the source fields with their names.
func (f *Force) sourceParams() []struct {
	field string
	p     StringParam
} {
	reason := f.Reason
	if reason.Default == "" && !reason.Required && !reason.Fixed {
		reason.Default = DefaultForceReason
	}
	out := []struct {
		field string
		p     StringParam
	}{{"Reason", reason}, {"Branch", f.Branch}, {"Revision", f.Revision}, {"Repository", f.Repository}, {"Project", f.Project}}
	for i := range out {
		out[i].p.Name = strings.ToLower(out[i].field)
	}
	return out
}

// ForceLabel implements ci.ForceScheduler: the Label field.
func (f *Force) ForceLabel() string { return f.Label }

// ForceParams implements ci.ForceScheduler: the form's parameters, in
// order: reason, branch, revision, repository, project, then the custom
// properties (Property set).
func (f *Force) ForceParams() []ci.ForceParam {
	var out []ci.ForceParam
	for _, s := range f.sourceParams() {
		out = append(out, ci.ForceParam{ParamSpec: s.p.Spec()})
	}
	for _, p := range f.Properties {
		if p != nil {
			out = append(out, ci.ForceParam{ParamSpec: p.Spec(), Property: true})
		}
	}
	return out
}

// Validate checks the parameters; the master calls it before starting.
func (f *Force) Validate() error {
	var errs []error
	for _, s := range f.sourceParams() {
		if err := s.p.validate(); err != nil {
			errs = append(errs, prefixLines(s.field+": ", err))
		}
	}
	seen := map[string]bool{}
	for i, p := range f.Properties {
		if p == nil {
			errs = append(errs, fmt.Errorf("Properties[%d] is nil", i))
			continue
		}
		name := p.Spec().Name
		label := fmt.Sprintf("Properties[%d] (%q)", i, name)
		switch {
		case name == "":
			errs = append(errs, fmt.Errorf("Properties[%d]: Name is empty", i))
		case slices.Contains(reserved, name):
			errs = append(errs, fmt.Errorf("%s: the name is reserved (%s)", label, strings.Join(reserved, ", ")))
		case seen[name]:
			errs = append(errs, fmt.Errorf("%s: a parameter of that name comes earlier", label))
		}
		seen[name] = true
		if v, ok := p.(interface{ validate() error }); ok {
			if err := v.validate(); err != nil {
				errs = append(errs, prefixLines(label+": ", err))
			}
		}
	}
	return errors.Join(errs...)
}

// Force implements ci.ForceScheduler: it checks the request and submits a
// buildset for it. A request that cannot be honoured gives an error
// wrapping ci.ErrInvalidForce that lists every problem, naming each
// parameter ("reason is required", `property "count": "x" is not an
// integer`), and nothing is stored.
func (f *Force) Force(ctx context.Context, m *ci.Master, r ci.ForceRequest) (*ci.Buildset, []*ci.BuildRequest, error) {
	var problems []string
	problem := func(what string, err error) {
		if errors.Is(err, ErrRequired) {
			problems = append(problems, what+" is required")
		} else {
			problems = append(problems, what+": "+err.Error())
		}
	}

	builders := r.Builders
	if len(builders) == 0 {
		builders = f.Builders
	}
	for _, b := range builders {
		if !slices.Contains(f.Builders, b) {
			problems = append(problems, fmt.Sprintf("builder %q is not one of this scheduler's builders", b))
		}
	}

	given := map[string]string{"reason": r.Reason, "branch": r.Branch, "revision": r.Revision, "repository": r.Repository, "project": r.Project}
	source := map[string]string{}
	for _, s := range f.sourceParams() {
		var in any
		if v := given[s.p.Name]; v != "" {
			in = v
		}
		v, err := s.p.Value(in)
		if err != nil {
			problem(s.p.Name, err)
			continue
		}
		source[s.p.Name], _ = v.(string)
	}

	props := ci.Properties{}
	known := map[string]bool{}
	for _, p := range f.Properties {
		if p == nil {
			continue
		}
		name := p.Spec().Name
		known[name] = true
		v, err := p.Value(r.Properties[name])
		if err != nil {
			problem(fmt.Sprintf("property %q", name), err)
			continue
		}
		props.Set(name, v, ci.SourceForce)
	}
	for _, name := range slices.Sorted(maps.Keys(r.Properties)) {
		if !known[name] {
			problems = append(problems, fmt.Sprintf("unknown property %q", name))
		}
	}
	if len(problems) > 0 {
		return nil, nil, fmt.Errorf("force %q: %w: %s", f.Name, ci.ErrInvalidForce, strings.Join(problems, "; "))
	}

	reason := source["reason"]
	props.Set("reason", reason, ci.SourceForce)
	text := reason
	if r.Owner != "" {
		props.Set("owner", r.Owner, ci.SourceForce)
		text = fmt.Sprintf("A build was forced by '%s': %s", r.Owner, reason)
	}
	bs, reqs, err := m.Submit(ctx, ci.Submission{
		Builders: builders,
		Reason:   text,
		SourceStamps: []ci.SourceStamp{{
			Codebase: f.Codebase, Repository: source["repository"], Branch: source["branch"],
			Revision: source["revision"], Project: source["project"],
		}},
		Properties: props,
		Priority:   f.Priority,
		Scheduler:  f.Name,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("force %q: %w", f.Name, err)
	}
	m.Logger().Info("scheduler: build forced", "scheduler", f.Name, "owner", r.Owner, "buildset", bs.ID)
	return bs, reqs, nil
}
