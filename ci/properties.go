package ci

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
)

// A Property is a named value of a build with the place it came from, as in
// Buildbot: "Builder", "Worker", "Scheduler", "Force Build Form", "Change",
// "Build", a step's name, and so on. Values are what encoding/json can encode
// and decode without loss: strings, numbers, booleans, nil, and lists and
// maps of those.
type Property struct {
	Value  any    `json:"value"`
	Source string `json:"source"`
}

// Well-known property sources.
const (
	SourceBuilder   = "Builder"
	SourceWorker    = "Worker"
	SourceBuild     = "Build"
	SourceScheduler = "Scheduler"
	SourceForce     = "Force Build Form"
	SourceChange    = "Change"
)

// Properties maps property names to their values and sources. The zero value
// (nil) is an empty set that can be read but not written. A Properties value
// is not safe for concurrent use; a running build guards its own.
type Properties map[string]Property

// Get returns the value of the property called name, and whether it is set.
func (p Properties) Get(name string) (any, bool) {
	v, ok := p[name]
	return v.Value, ok
}

// String returns the property's value as a string: strings as they are,
// numbers and booleans formatted, nil and missing properties as "".
func (p Properties) String(name string) string {
	v, ok := p[name]
	if !ok {
		return ""
	}
	return FormatValue(v.Value)
}

// Set sets the property called name to value, recording where it came from.
func (p Properties) Set(name string, value any, source string) {
	p[name] = Property{Value: value, Source: source}
}

// Update copies every property of q into p, replacing those p has.
func (p Properties) Update(q Properties) {
	maps.Copy(p, q)
}

// SetAll sets every value of values with the same source.
func (p Properties) SetAll(values map[string]any, source string) {
	for k, v := range values {
		p[k] = Property{Value: v, Source: source}
	}
}

// Clone returns a copy of p that can be changed without changing p. Values
// themselves are shared.
func (p Properties) Clone() Properties {
	q := make(Properties, len(p))
	maps.Copy(q, p)
	return q
}

// Names returns the property names in sorted order.
func (p Properties) Names() []string {
	return slices.Sorted(maps.Keys(p))
}

// FormatValue formats a property value the way Interpolate does: strings
// as they are, integers and floats in their shortest decimal form, booleans
// as "True"/"False" as Buildbot (Python) prints them, nil as "".
func FormatValue(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case bool:
		if x {
			return "True"
		}
		return "False"
	case int:
		return strconv.Itoa(x)
	case int64:
		return strconv.FormatInt(x, 10)
	case float64:
		if x == float64(int64(x)) && x < 1e15 && x > -1e15 {
			return strconv.FormatInt(int64(x), 10)
		}
		return strconv.FormatFloat(x, 'g', -1, 64)
	case fmt.Stringer:
		return x.String()
	default:
		return fmt.Sprint(x)
	}
}
