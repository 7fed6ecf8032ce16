package scheduler

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"sync"

	"github.com/kilnci/kiln/ci"
)

// A ChangeFilter selects the changes a scheduler reacts to, as Buildbot's
// ChangeFilter does. Each attribute of a change (category, branch,
// project, repository, codebase) may be tested against a list of exact
// values and against a regular expression; Fn tests the whole change. A
// change passes when it passes every test that is set. The zero value sets
// none and lets every change pass.
//
// Buildbot's arguments map to fields this way:
//
//	category=["new-tag"]        Category: []string{"new-tag"}
//	branch="master"             Branch: []string{"master"}
//	branch=None (default branch) Branch: []string{""}
//	branch_re=r"release/.*"     BranchRe: `release/.*`
//	filter_fn=f                 Fn: f
//
// Regular expressions are Go's (RE2 syntax) and, as with Python's
// re.match in Buildbot, they must match at the start of the value but not
// necessarily all of it: `release/` matches "release/1.0"; write
// `^release/\d+$` (or end with `$`) to match the whole value. An invalid
// expression is reported by Validate, so by the master's configuration
// check, and never matches.
//
// A ChangeFilter is safe for concurrent use once configured; Fn must be
// too, and must be quick: schedulers call it for every change the master
// receives.
type ChangeFilter struct {
	Category   []string
	CategoryRe string

	Branch   []string
	BranchRe string

	Project   []string
	ProjectRe string

	Repository   []string
	RepositoryRe string

	Codebase   []string
	CodebaseRe string

	// Fn, when set, is called last, for changes that passed every other
	// test.
	Fn func(c *ci.Change) bool
}

// IsZero reports whether f tests nothing (every change passes).
func (f *ChangeFilter) IsZero() bool {
	return f.Category == nil && f.CategoryRe == "" && f.Branch == nil && f.BranchRe == "" &&
		f.Project == nil && f.ProjectRe == "" && f.Repository == nil && f.RepositoryRe == "" &&
		f.Codebase == nil && f.CodebaseRe == "" && f.Fn == nil
}

// Match reports whether c passes the filter.
func (f *ChangeFilter) Match(c *ci.Change) bool {
	// Exact values first: they are the cheapest and reject the most.
	return matchValues(f.Category, c.Category) && matchValues(f.Branch, c.Branch) &&
		matchValues(f.Project, c.Project) && matchValues(f.Repository, c.Repository) &&
		matchValues(f.Codebase, c.Codebase) &&
		matchRe(f.CategoryRe, c.Category) && matchRe(f.BranchRe, c.Branch) &&
		matchRe(f.ProjectRe, c.Project) && matchRe(f.RepositoryRe, c.Repository) &&
		matchRe(f.CodebaseRe, c.Codebase) &&
		(f.Fn == nil || f.Fn(c))
}

func matchValues(values []string, v string) bool {
	return values == nil || slices.Contains(values, v)
}

func matchRe(re, v string) bool {
	if re == "" {
		return true
	}
	rx, err := compileFilterRe(re)
	return err == nil && rx.MatchString(v)
}

// Validate reports the regular expressions that do not compile, one line
// each, naming the field.
func (f *ChangeFilter) Validate() error {
	var errs []error
	for _, x := range []struct{ field, re string }{
		{"CategoryRe", f.CategoryRe},
		{"BranchRe", f.BranchRe},
		{"ProjectRe", f.ProjectRe},
		{"RepositoryRe", f.RepositoryRe},
		{"CodebaseRe", f.CodebaseRe},
	} {
		if x.re == "" {
			continue
		}
		if _, err := regexp.Compile(x.re); err != nil {
			errs = append(errs, fmt.Errorf("%s %q: %w", x.field, x.re, err))
		}
	}
	return errors.Join(errs...)
}

// filterRes caches compiled filter expressions: configurations hold a
// handful, and Match runs for every change.
var filterRes sync.Map // string -> *compiledRe

type compiledRe struct {
	rx  *regexp.Regexp
	err error
}

// compileFilterRe compiles re anchored at the start, as Python's re.match
// matches.
func compileFilterRe(re string) (*regexp.Regexp, error) {
	if v, ok := filterRes.Load(re); ok {
		c := v.(*compiledRe)
		return c.rx, c.err
	}
	rx, err := regexp.Compile(`^(?:` + re + `)`)
	if err == nil {
		// Check the expression alone too, so that "a)|(b" is refused as
		// Validate refuses it.
		_, err = regexp.Compile(re)
	}
	if err != nil {
		rx = nil
	}
	v, _ := filterRes.LoadOrStore(re, &compiledRe{rx: rx, err: err})
	c := v.(*compiledRe)
	return c.rx, c.err
}
