package ci

import (
	"context"
	"errors"
)

// A ForceScheduler starts builds when a person asks for one (Buildbot's
// ForceScheduler; scheduler.Force is Kiln's). It describes the form a web
// UI draws for it (ForceLabel, ForceParams), and Force checks and submits
// what the form sends. The web UI gives a form to every scheduler of the
// configuration that implements this interface, so a configuration may
// bring its own.
//
// The methods are called concurrently, from the web server's handlers;
// ForceLabel and ForceParams must not change while the master runs.
type ForceScheduler interface {
	Scheduler
	// ForceLabel is what the form's button says; the web UI shows the
	// scheduler's name when it is empty.
	ForceLabel() string
	// ForceParams describes the form's fields, in the order they are
	// shown: the source fields (reason, branch, revision, repository,
	// project) that the scheduler offers, then its custom properties.
	ForceParams() []ForceParam
	// Force checks the request and submits a buildset for it (through
	// Master.Submit), returning the buildset and its build requests as
	// Submit does. A request that cannot be honoured as asked returns an
	// error wrapping ErrInvalidForce, which names every field at fault,
	// and stores nothing; any other error is the master's.
	Force(ctx context.Context, m *Master, r ForceRequest) (*Buildset, []*BuildRequest, error)
}

// ErrInvalidForce is wrapped by the errors of a ForceScheduler about a
// request that cannot be honoured as asked: a value refused, an unknown
// property, a builder that is not the scheduler's. A web UI answers it with
// 400 Bad Request.
var ErrInvalidForce = errors.New("invalid force request")

// A ForceRequest is what a person asks a ForceScheduler for. Empty fields
// take the scheduler's defaults.
type ForceRequest struct {
	// Owner is who forces the build (a login), recorded as the "owner"
	// property.
	Owner string
	// Builders selects some of the scheduler's builders; all if empty.
	Builders []string
	// Reason says why.
	Reason string
	// The source to build.
	Branch, Revision, Repository, Project string
	// Properties gives values to the scheduler's property parameters, by
	// name: strings as a form sends them, or typed values (int, float64,
	// bool, []string) as JSON decodes them.
	Properties map[string]any
}

// A ForceParam describes one field of a ForceScheduler's form.
type ForceParam struct {
	ParamSpec
	// Property is true for a custom property (ForceRequest.Properties),
	// false for a source field (ForceRequest.Reason, Branch, Revision,
	// Repository, Project, by Name: "reason", "branch", ...).
	Property bool `json:"property"`
}

// ParamSpec describes a parameter of a form, in the shape of Buildbot's
// force scheduler parameters (their JSON names).
type ParamSpec struct {
	// Name is the property (or source field) the parameter sets.
	Name string `json:"name"`
	// Type is Buildbot's: "text", "int", "bool", "list" (a choice) or
	// "fixed" (shown, not editable).
	Type string `json:"type"`
	// Label is what a form shows; the name if not set.
	Label string `json:"label"`
	// Default is the value used when the request gives none: a string, an
	// int, a bool, or a list of strings.
	Default  any  `json:"default"`
	Required bool `json:"required"`
	// Hidden parameters are not shown in forms; they take their default
	// unless a request gives a value.
	Hidden bool `json:"hide"`
	// Regexp is the pattern a text value must match (empty: any).
	Regexp string `json:"regex,omitempty"`
	// Choices and Multiple describe a choice.
	Choices  []string `json:"choices,omitempty"`
	Multiple bool     `json:"multiple"`
	// MaxLength bounds a text value's length in bytes (0: no bound).
	MaxLength int `json:"maxsize,omitempty"`
}
