package webui

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/kilnci/kiln/ci"
)

// This file is the one place that knows the force schedulers' API
// (ci.ForceScheduler): the fields of their forms, and how a form or a
// JSON-RPC call becomes a force request. Any scheduler of the
// configuration that implements the interface gets a form.

// A forceField is one field of a force form, as the page shows it.
type forceField struct {
	ci.ForceParam
	// Value is the default, as the form's text.
	Value string
	// Values are the defaults of a multiple choice.
	Values []string
}

// Selected reports whether a choice is among the defaults.
func (f forceField) Selected(choice string) bool {
	if f.Multiple {
		return slices.Contains(f.Values, choice)
	}
	return choice == f.Value
}

// forceSchedulers returns the force schedulers of the configuration, those
// that may build the named builder if it is not "".
func (a *app) forceSchedulers(builder string) []ci.ForceScheduler {
	var out []ci.ForceScheduler
	for _, s := range a.m.Config().Schedulers {
		f, ok := s.(ci.ForceScheduler)
		if ok && (builder == "" || slices.Contains(f.BuilderNames(), builder)) {
			out = append(out, f)
		}
	}
	return out
}

func (a *app) forceScheduler(name string) (ci.ForceScheduler, error) {
	for _, f := range a.forceSchedulers("") {
		if f.SchedulerName() == name {
			return f, nil
		}
	}
	return nil, fmt.Errorf("%w: no force scheduler %q", errNotFound, name)
}

// forceFields lists the fields of f's form, as the scheduler describes
// them: the reason and source stamp, then its properties.
func forceFields(f ci.ForceScheduler) []forceField {
	var out []forceField
	for _, p := range f.ForceParams() {
		ff := forceField{ForceParam: p}
		if ff.Label == "" || ff.Label == ff.Name && !ff.Property {
			// The source fields, named as Buildbot's form names them.
			ff.Label = strings.ToUpper(ff.Name[:1]) + ff.Name[1:]
		}
		switch d := p.Default.(type) {
		case []string:
			ff.Values = d
		case nil:
		default:
			ff.Value = paramString(d)
		}
		out = append(out, ff)
	}
	return out
}

// force submits a force request for the builders, with values by field
// name (strings from a form, typed values from a JSON-RPC call's params),
// and returns the buildset and its requests. The scheduler checks the
// values; an error about them wraps ci.ErrInvalidForce.
func (a *app) force(ctx context.Context, f ci.ForceScheduler, owner string, builders []string, values map[string]any) (*ci.Buildset, []*ci.BuildRequest, error) {
	req := ci.ForceRequest{Owner: owner, Builders: builders, Properties: map[string]any{}}
	source := map[string]*string{"reason": &req.Reason, "branch": &req.Branch, "revision": &req.Revision,
		"repository": &req.Repository, "project": &req.Project}
	for k, v := range values {
		if p, ok := source[k]; ok {
			s, ok := v.(string)
			if !ok {
				return nil, nil, &rpcError{rpcInvalidParams, fmt.Errorf("%w: %s must be a string", errBadRequest, k)}
			}
			*p = s
			continue
		}
		req.Properties[k] = v
	}
	return f.Force(ctx, a.m, req)
}

// forceSchedulerJSON is Buildbot's description of a force scheduler.
type forceSchedulerJSON struct {
	Name         string           `json:"name"`
	ButtonName   string           `json:"button_name"`
	Label        string           `json:"label"`
	BuilderNames []string         `json:"builder_names"`
	Enabled      bool             `json:"enabled"`
	AllFields    []map[string]any `json:"all_fields"`
}

func toForceSchedulerJSON(f ci.ForceScheduler) forceSchedulerJSON {
	label := f.ForceLabel()
	if label == "" {
		label = f.SchedulerName()
	}
	j := forceSchedulerJSON{Name: f.SchedulerName(), ButtonName: label, Label: label, BuilderNames: f.BuilderNames(), Enabled: true}
	if j.BuilderNames == nil {
		j.BuilderNames = []string{}
	}
	fields := []map[string]any{}
	for _, p := range f.ForceParams() {
		spec := map[string]any{
			"name": p.Name, "fullName": p.Name, "label": p.Label, "tablabel": p.Label, "type": p.Type,
			"default": p.Default, "required": p.Required, "hide": p.Hidden, "multiple": p.Multiple,
			"regex": nil, "maxsize": nil, "autopopulate": nil, "columns": 1, "property": p.Property,
		}
		if p.Regexp != "" {
			spec["regex"] = p.Regexp
		}
		if p.MaxLength > 0 {
			spec["maxsize"] = p.MaxLength
		}
		if p.Type == "list" {
			spec["choices"] = p.Choices
		}
		fields = append(fields, spec)
	}
	// Buildbot nests the fields in one unnamed group.
	j.AllFields = []map[string]any{{
		"name": "", "fullName": "", "label": "", "tablabel": "", "type": "nested", "default": "",
		"required": false, "hide": false, "multiple": false, "regex": nil, "maxsize": nil,
		"autopopulate": nil, "columns": 1, "layout": "vertical", "fields": fields,
	}}
	return j
}
