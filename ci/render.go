package ci

import (
	"context"
	"errors"
	"fmt"

	"github.com/kilnci/kiln/internal/pyvalue"
)

// A Renderable is a value computed when a build runs, from the build's
// properties, source stamps and worker: ci.Interpolate, ci.Prop and
// ci.RenderFunc are renderables, and steps accept them wherever their
// documentation says "or a Renderable".
//
// Render may be called from several builds at once and must not change the
// renderable.
type Renderable interface {
	Render(ctx context.Context, p Props) (any, error)
}

// Props is what a renderable reads: the properties of the build being
// rendered for, its source stamps, and its worker. A running step (StepRun)
// is one; StaticProps is one for tests and examples.
type Props interface {
	// Property returns a property's value, and whether it is set.
	Property(name string) (any, bool)
	// SourceStamp returns the build's source stamp for a codebase ("" is the
	// default codebase).
	SourceStamp(codebase string) (SourceStamp, bool)
	// Worker returns the name and info of the build's worker.
	Worker() (name string, info WorkerInfo)
}

// RenderFunc is the plain Go form of a renderable: a function of the
// build's properties.
type RenderFunc func(ctx context.Context, p Props) (any, error)

// Render calls f.
func (f RenderFunc) Render(ctx context.Context, p Props) (any, error) { return f(ctx, p) }

// StaticProps is a fixed set of properties and source stamps that renderables
// can be rendered against outside a build: in tests and examples.
type StaticProps struct {
	Properties   Properties
	SourceStamps []SourceStamp
	WorkerName   string
	WorkerInfo   WorkerInfo
}

// Property implements Props.
func (s StaticProps) Property(name string) (any, bool) { return s.Properties.Get(name) }

// SourceStamp implements Props.
func (s StaticProps) SourceStamp(codebase string) (SourceStamp, bool) {
	for _, ss := range s.SourceStamps {
		if ss.Codebase == codebase {
			return ss, true
		}
	}
	return SourceStamp{}, false
}

// Worker implements Props.
func (s StaticProps) Worker() (string, WorkerInfo) { return s.WorkerName, s.WorkerInfo }

// PropRef renders the value of a property; see Prop.
type PropRef struct {
	name      string
	def       any
	whenFalse bool
}

// Prop returns a renderable giving the value of the property called name
// (nil if it is not set), as Buildbot's Property does.
func Prop(name string) PropRef { return PropRef{name: name} }

// Default returns a copy of r that renders def when the property is not set
// or is false, empty or zero.
func (r PropRef) Default(def any) PropRef { r.def = def; r.whenFalse = true; return r }

// Render implements Renderable.
func (r PropRef) Render(ctx context.Context, p Props) (any, error) {
	v, ok := p.Property(r.name)
	if !ok || (r.whenFalse && !pyvalue.Truthy(v)) {
		return Render(ctx, p, r.def)
	}
	return v, nil
}

// Render computes v for the build p: a Renderable is rendered (and its
// result rendered in turn), lists and maps are rendered element by element,
// anything else is returned as it is.
func Render(ctx context.Context, p Props, v any) (any, error) {
	for range 16 {
		r, ok := v.(Renderable)
		if !ok {
			break
		}
		var err error
		if v, err = r.Render(ctx, p); err != nil {
			return nil, err
		}
	}
	switch x := v.(type) {
	case Renderable:
		return nil, errors.New("render: renderables nested too deeply")
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			r, err := Render(ctx, p, e)
			if err != nil {
				return nil, err
			}
			out[i] = r
		}
		return out, nil
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			r, err := Render(ctx, p, e)
			if err != nil {
				return nil, err
			}
			out[k] = r
		}
		return out, nil
	}
	return v, nil
}

// RenderString renders v and formats the result as Interpolate formats a
// property value.
func RenderString(ctx context.Context, p Props, v any) (string, error) {
	r, err := Render(ctx, p, v)
	if err != nil {
		return "", err
	}
	if s, ok := r.(string); ok {
		return s, nil
	}
	switch r.(type) {
	case []any, []string, map[string]any:
		return "", fmt.Errorf("render: got a %T where a string was expected", r)
	}
	return FormatValue(r), nil
}

// RenderList renders v into a list of strings: v may be a []string, a []any
// of strings, renderables and nested lists (flattened, as Buildbot does with
// commands), or a renderable giving one of those. A single string gives a
// one-element list.
func RenderList(ctx context.Context, p Props, v any) ([]string, error) {
	r, err := Render(ctx, p, v)
	if err != nil {
		return nil, err
	}
	var out []string
	var walk func(x any) error
	walk = func(x any) error {
		switch y := x.(type) {
		case nil:
			return nil
		case string:
			out = append(out, y)
		case []string:
			out = append(out, y...)
		case []any:
			for _, e := range y {
				e, err := Render(ctx, p, e)
				if err != nil {
					return err
				}
				if err := walk(e); err != nil {
					return err
				}
			}
		case map[string]any:
			return fmt.Errorf("render: got a map where a list of strings was expected")
		default:
			out = append(out, FormatValue(y))
		}
		return nil
	}
	if err := walk(r); err != nil {
		return nil, err
	}
	return out, nil
}

// A validator is a value that can tell at configuration time whether it is
// usable, such as an Interpolate with a malformed format.
type validator interface{ Validate() error }

// A configValidator is a step or scheduler that checks itself against the
// whole configuration (a step naming schedulers, a scheduler naming
// another): the configuration check calls ValidateConfig after Validate.
type configValidator interface {
	ValidateConfig(c *MasterConfig) error
}

// CheckValue reports whether v can be rendered: it is a string, number,
// boolean, nil, a list or map of those, or a Renderable; and every
// Interpolate in it parsed. Steps call it from their Validate method for
// each field that takes a renderable.
func CheckValue(v any) error {
	switch x := v.(type) {
	case nil, string, bool, int, int64, float64, []string, map[string]string:
		return nil
	case validator:
		return x.Validate()
	case Renderable:
		return nil
	case []any:
		var errs []error
		for i, e := range x {
			if err := CheckValue(e); err != nil {
				errs = append(errs, fmt.Errorf("[%d]: %w", i, err))
			}
		}
		return errors.Join(errs...)
	case map[string]any:
		var errs []error
		for k, e := range x {
			if err := CheckValue(e); err != nil {
				errs = append(errs, fmt.Errorf("[%q]: %w", k, err))
			}
		}
		return errors.Join(errs...)
	}
	return fmt.Errorf("a %T is not a string, number, list or renderable", v)
}
