package scheduler

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/kilnci/kiln/ci"
)

// A Param is a field of a Force scheduler's form, Buildbot's force
// scheduler parameter: it describes itself for a form (Spec) and checks
// what a request gives for it (Value). StringParam, IntParam, BoolParam and
// ChoiceParam are Kiln's; others can be written.
type Param interface {
	// Spec describes the parameter for a form.
	Spec() ci.ParamSpec
	// Value checks what a request gave for the parameter (nil if it gave
	// nothing) and returns the value to use. An error says why the value
	// is refused, without naming the parameter; ErrRequired says it is
	// missing.
	Value(given any) (any, error)
}

// ErrRequired is returned by Param.Value when a required parameter is
// given no value.
var ErrRequired = errors.New("is required")

// StringParam is a text parameter (Buildbot's StringParameter, and
// FixedParameter when Fixed).
type StringParam struct {
	// Name is the property it sets; for Force's Reason, Branch, Revision,
	// Repository and Project, it is implied and may be left empty.
	Name  string
	Label string
	// Default is used when the request gives nothing (or only spaces).
	Default string
	// Required refuses a request that gives nothing, when Default is
	// empty.
	Required bool
	// Regexp, when set, must match the whole value (Go RE2 syntax).
	Regexp string
	// MaxLength bounds the value's length in bytes (0: no bound).
	MaxLength int
	// Hidden leaves the field out of forms.
	Hidden bool
	// Fixed makes the value always Default: a request giving another value
	// is refused.
	Fixed bool
}

// Spec implements Param.
func (p StringParam) Spec() ci.ParamSpec {
	typ := "text"
	if p.Fixed {
		typ = "fixed"
	}
	return ci.ParamSpec{Name: p.Name, Type: typ, Label: labelOr(p.Label, p.Name), Default: p.Default,
		Required: p.Required, Hidden: p.Hidden || p.Fixed, Regexp: p.Regexp, MaxLength: p.MaxLength}
}

// Value implements Param: it accepts a string (or a one-element list of
// strings, as forms send).
func (p StringParam) Value(given any) (any, error) {
	s, ok, err := oneString(given)
	if err != nil {
		return nil, err
	}
	s = strings.TrimSpace(s)
	if p.Fixed {
		if ok && s != "" && s != p.Default {
			return nil, fmt.Errorf("is fixed to %q, not %q", p.Default, s)
		}
		return p.Default, nil
	}
	if !ok || s == "" {
		if p.Default == "" && p.Required {
			return nil, ErrRequired
		}
		s = p.Default
	}
	if p.MaxLength > 0 && len(s) > p.MaxLength {
		return nil, fmt.Errorf("is %d bytes long, more than %d", len(s), p.MaxLength)
	}
	if p.Regexp != "" && s != "" {
		rx, err := wholeRe(p.Regexp)
		if err != nil {
			return nil, fmt.Errorf("cannot be checked: %w", err)
		}
		if !rx.MatchString(s) {
			return nil, fmt.Errorf("%q does not match %s", s, p.Regexp)
		}
	}
	return s, nil
}

func (p StringParam) validate() error {
	var errs []error
	if p.Regexp != "" {
		if _, err := wholeRe(p.Regexp); err != nil {
			errs = append(errs, fmt.Errorf("Regexp %q: %w", p.Regexp, err))
		} else if p.Default != "" {
			if _, err := p.Value(nil); err != nil {
				errs = append(errs, fmt.Errorf("Default %q does not match Regexp %s", p.Default, p.Regexp))
			}
		}
	}
	if p.MaxLength < 0 {
		errs = append(errs, fmt.Errorf("MaxLength is negative (%d)", p.MaxLength))
	}
	return errors.Join(errs...)
}

// IntParam is an integer parameter (Buildbot's IntParameter). Its value is
// an int.
type IntParam struct {
	Name    string
	Label   string
	Default int
	// Required refuses a request that gives nothing.
	Required bool
	Hidden   bool
}

// Spec implements Param.
func (p IntParam) Spec() ci.ParamSpec {
	return ci.ParamSpec{Name: p.Name, Type: "int", Label: labelOr(p.Label, p.Name), Default: p.Default, Required: p.Required, Hidden: p.Hidden}
}

// Value implements Param: it accepts an integer, a float with no
// fraction (as JSON decodes numbers), a json.Number or a decimal string.
func (p IntParam) Value(given any) (any, error) {
	switch v := given.(type) {
	case nil:
		return p.intDefault()
	case int:
		return v, nil
	case int64:
		if v < math.MinInt || v > math.MaxInt {
			return nil, fmt.Errorf("%d is out of range", v)
		}
		return int(v), nil
	case float64:
		if v != math.Trunc(v) || math.Abs(v) > 1<<53 {
			return nil, fmt.Errorf("%v is not an integer", v)
		}
		return int(v), nil
	case json.Number:
		n, err := strconv.Atoi(string(v))
		if err != nil {
			return nil, fmt.Errorf("%q is not an integer", string(v))
		}
		return n, nil
	}
	s, ok, err := oneString(given)
	if err != nil {
		return nil, err
	}
	s = strings.TrimSpace(s)
	if !ok || s == "" {
		return p.intDefault()
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return nil, fmt.Errorf("%q is not an integer", s)
	}
	return n, nil
}

func (p IntParam) intDefault() (any, error) {
	if p.Required {
		return nil, ErrRequired
	}
	return p.Default, nil
}

// BoolParam is a check box (Buildbot's BooleanParameter). Its value is a
// bool.
type BoolParam struct {
	Name    string
	Label   string
	Default bool
	Hidden  bool
}

// Spec implements Param.
func (p BoolParam) Spec() ci.ParamSpec {
	return ci.ParamSpec{Name: p.Name, Type: "bool", Label: labelOr(p.Label, p.Name), Default: p.Default, Hidden: p.Hidden}
}

// Value implements Param: it accepts a bool or a string ("true", "false",
// "on", "off", "yes", "no", "1", "0"; case-insensitive).
func (p BoolParam) Value(given any) (any, error) {
	if b, ok := given.(bool); ok {
		return b, nil
	}
	s, ok, err := oneString(given)
	if err != nil {
		return nil, err
	}
	if !ok || strings.TrimSpace(s) == "" {
		return p.Default, nil
	}
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "true", "on", "yes", "1":
		return true, nil
	case "false", "off", "no", "0":
		return false, nil
	}
	return nil, fmt.Errorf("%q is not a boolean (true or false)", s)
}

// ChoiceParam is a choice among fixed strings (Buildbot's
// ChoiceStringParameter, always strict). Its value is a string, or a
// []string when Multiple.
type ChoiceParam struct {
	Name    string
	Label   string
	Choices []string
	// Default is the value used when the request gives nothing; it must be
	// one of Choices (or empty).
	Default string
	// Multiple lets a request choose several values; Defaults are then
	// the values used when it gives none, and Default is ignored.
	Multiple bool
	Defaults []string
	// Required refuses a request that gives nothing, when there is no
	// default.
	Required bool
	Hidden   bool
}

// Spec implements Param.
func (p ChoiceParam) Spec() ci.ParamSpec {
	var def any = p.Default
	if p.Multiple {
		def = slices.Clone(p.Defaults)
	}
	return ci.ParamSpec{Name: p.Name, Type: "list", Label: labelOr(p.Label, p.Name), Default: def, Required: p.Required,
		Hidden: p.Hidden, Choices: slices.Clone(p.Choices), Multiple: p.Multiple}
}

// Value implements Param: it accepts a string, or a list of strings
// ([]string or []any) for Multiple.
func (p ChoiceParam) Value(given any) (any, error) {
	var vals []string
	switch v := given.(type) {
	case nil:
	case string:
		if strings.TrimSpace(v) != "" {
			vals = []string{v}
		}
	case []string:
		vals = v
	case []any:
		for _, x := range v {
			s, ok := x.(string)
			if !ok {
				return nil, fmt.Errorf("has a %T where a string was expected", x)
			}
			vals = append(vals, s)
		}
	default:
		return nil, fmt.Errorf("is a %T, not a string", given)
	}
	vals = slices.DeleteFunc(slices.Clone(vals), func(s string) bool { return strings.TrimSpace(s) == "" })
	if len(vals) == 0 {
		switch {
		case p.Multiple && len(p.Defaults) > 0:
			return slices.Clone(p.Defaults), nil
		case !p.Multiple && p.Default != "":
			return p.Default, nil
		case p.Required:
			return nil, ErrRequired
		case p.Multiple:
			return []string{}, nil
		}
		return "", nil
	}
	if !p.Multiple && len(vals) > 1 {
		return nil, fmt.Errorf("takes one value, not %d", len(vals))
	}
	for _, v := range vals {
		if !slices.Contains(p.Choices, v) {
			return nil, fmt.Errorf("%q is not one of the choices (%s)", v, strings.Join(p.Choices, ", "))
		}
	}
	if p.Multiple {
		return vals, nil
	}
	return vals[0], nil
}

func (p ChoiceParam) validate() error {
	var errs []error
	if len(p.Choices) == 0 {
		errs = append(errs, errors.New("Choices is empty"))
	}
	if p.Default != "" && !slices.Contains(p.Choices, p.Default) {
		errs = append(errs, fmt.Errorf("Default %q is not one of Choices", p.Default))
	}
	for _, d := range p.Defaults {
		if !slices.Contains(p.Choices, d) {
			errs = append(errs, fmt.Errorf("Defaults: %q is not one of Choices", d))
		}
	}
	if len(p.Defaults) > 0 && !p.Multiple {
		errs = append(errs, errors.New("Defaults is for Multiple choices; use Default"))
	}
	return errors.Join(errs...)
}

var (
	_ Param = StringParam{}
	_ Param = IntParam{}
	_ Param = BoolParam{}
	_ Param = ChoiceParam{}
)

func labelOr(label, name string) string {
	if label != "" {
		return label
	}
	return name
}

// oneString reads a string value, or the only element of a list of
// strings, as forms send values.
func oneString(given any) (string, bool, error) {
	switch v := given.(type) {
	case nil:
		return "", false, nil
	case string:
		return v, true, nil
	case []string:
		switch len(v) {
		case 0:
			return "", false, nil
		case 1:
			return v[0], true, nil
		}
		return "", false, fmt.Errorf("takes one value, not %d", len(v))
	case []any:
		switch len(v) {
		case 0:
			return "", false, nil
		case 1:
			s, ok := v[0].(string)
			if !ok {
				return "", false, fmt.Errorf("is a %T, not a string", v[0])
			}
			return s, true, nil
		}
		return "", false, fmt.Errorf("takes one value, not %d", len(v))
	}
	return "", false, fmt.Errorf("is a %T, not a string", given)
}

// wholeRe compiles re to match whole values.
func wholeRe(re string) (*regexp.Regexp, error) {
	if _, err := regexp.Compile(re); err != nil {
		return nil, err
	}
	return regexp.Compile(`^(?:` + re + `)$`)
}
