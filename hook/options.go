package hook

import (
	"encoding/json"
	"fmt"
	"path"
	"regexp"
	"sort"
)

// DefaultSkips are the patterns of a commit message that skip its build,
// Buildbot's: "[ci skip]" and "[skip ci]", with any spaces inside the
// brackets.
var DefaultSkips = []string{`\[ *skip *ci *\]`, `\[ *ci *skip *\]`}

// skipper finds a skip pattern in commit messages.
type skipper []*regexp.Regexp

// newSkipper compiles patterns; nil means DefaultSkips, an empty list
// none.
func newSkipper(patterns []string) (skipper, error) {
	if patterns == nil {
		patterns = DefaultSkips
	}
	var s skipper
	for _, p := range patterns {
		re, err := regexp.Compile(p)
		if err != nil {
			return nil, fmt.Errorf("Skips: %w", err)
		}
		s = append(s, re)
	}
	return s, nil
}

// match returns the text of the first pattern found in msg, or "".
func (s skipper) match(msg string) string {
	for _, re := range s {
		if m := re.FindString(msg); m != "" {
			return m
		}
	}
	return ""
}

// checkPatterns reports a pattern of PayloadProperties that path.Match
// refuses.
func checkPatterns(patterns []string) error {
	for _, p := range patterns {
		if _, err := path.Match(p, ""); err != nil {
			return fmt.Errorf("PayloadProperties: pattern %q: %w", p, err)
		}
	}
	return nil
}

// payloadProperties returns the fields of a JSON object whose flattened
// names (prefix, then each key, joined by dots: "github.repository.name")
// match one of patterns (path.Match, as Buildbot's fnmatch: "*" matches
// any text, dots included, so "github.*" matches every field). Objects
// are walked into; a matching list or value is kept whole.
func payloadProperties(prefix string, object json.RawMessage, patterns []string) (map[string]any, error) {
	if len(patterns) == 0 || len(object) == 0 {
		return nil, nil
	}
	var root map[string]any
	if err := json.Unmarshal(object, &root); err != nil {
		return nil, fmt.Errorf("payload properties: %w", err)
	}
	props := map[string]any{}
	var walk func(base string, m map[string]any)
	walk = func(base string, m map[string]any) {
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			name := base + "." + k
			if sub, ok := m[k].(map[string]any); ok {
				walk(name, sub)
				continue
			}
			for _, p := range patterns {
				if ok, _ := path.Match(p, name); ok {
					props[name] = m[k]
					break
				}
			}
		}
	}
	walk(prefix, root)
	if len(props) == 0 {
		return nil, nil
	}
	return props, nil
}
