package scheduler_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kilnci/kiln/ci"
	"github.com/kilnci/kiln/scheduler"
)

func TestChangeFilter_Match(t *testing.T) {
	tag := &ci.Change{Category: "new-tag", Branch: "0.9.1", Project: "ideascube", Repository: "https://github.com/ideascube/ideascube", Codebase: ""}
	push := &ci.Change{Category: "push", Branch: "master", Project: "ideascube", Repository: "https://github.com/ideascube/ideascube", Codebase: "app"}
	release := &ci.Change{Branch: "release/1.0", Repository: "git@example.org:kiln.git"}
	def := &ci.Change{Branch: ""}
	all := []*ci.Change{tag, push, release, def}

	tests := []struct {
		name   string
		filter scheduler.ChangeFilter
		want   []*ci.Change
	}{
		{"Zero", scheduler.ChangeFilter{}, all},
		{"Category", scheduler.ChangeFilter{Category: []string{"new-tag"}}, []*ci.Change{tag}},
		{"Categories", scheduler.ChangeFilter{Category: []string{"new-tag", "push"}}, []*ci.Change{tag, push}},
		{"CategoryRe", scheduler.ChangeFilter{CategoryRe: "new-"}, []*ci.Change{tag}},
		{"Branch", scheduler.ChangeFilter{Branch: []string{"master"}}, []*ci.Change{push}},
		{"DefaultBranch", scheduler.ChangeFilter{Branch: []string{""}}, []*ci.Change{def}},
		{"EmptyListMatchesNothing", scheduler.ChangeFilter{Branch: []string{}}, nil},
		{"BranchReAnchoredAtStart", scheduler.ChangeFilter{BranchRe: `release/`}, []*ci.Change{release}},
		{"BranchReNotInTheMiddle", scheduler.ChangeFilter{BranchRe: `1\.0`}, nil},
		{"BranchReWhole", scheduler.ChangeFilter{BranchRe: `\d+\.\d+\.\d+$`}, []*ci.Change{tag}},
		{"BranchReAlternatives", scheduler.ChangeFilter{BranchRe: `master|release/.*`}, []*ci.Change{push, release}},
		{"BranchListAndRe", scheduler.ChangeFilter{Branch: []string{"master", "0.9.1"}, BranchRe: `\d`}, []*ci.Change{tag}},
		{"Project", scheduler.ChangeFilter{Project: []string{"ideascube"}}, []*ci.Change{tag, push}},
		{"ProjectRe", scheduler.ChangeFilter{ProjectRe: `idea`}, []*ci.Change{tag, push}},
		{"Repository", scheduler.ChangeFilter{Repository: []string{"git@example.org:kiln.git"}}, []*ci.Change{release}},
		{"RepositoryRe", scheduler.ChangeFilter{RepositoryRe: `https://github\.com/ideascube/`}, []*ci.Change{tag, push}},
		{"Codebase", scheduler.ChangeFilter{Codebase: []string{"app"}}, []*ci.Change{push}},
		{"CodebaseRe", scheduler.ChangeFilter{CodebaseRe: `^$`}, []*ci.Change{tag, release, def}},
		{"Every", scheduler.ChangeFilter{Category: []string{"push"}, Branch: []string{"master"}, ProjectRe: "idea", Codebase: []string{"app"}}, []*ci.Change{push}},
		{"EveryButOne", scheduler.ChangeFilter{Category: []string{"push"}, Branch: []string{"master"}, Codebase: []string{""}}, nil},
		{"Fn", scheduler.ChangeFilter{Fn: func(c *ci.Change) bool { return strings.HasPrefix(c.Branch, "0.") }}, []*ci.Change{tag}},
		{"FnAndFields", scheduler.ChangeFilter{Category: []string{"push"}, Fn: func(c *ci.Change) bool { return true }}, []*ci.Change{push}},
		{"InvalidReMatchesNothing", scheduler.ChangeFilter{BranchRe: `(`}, nil},
		{"InvalidAloneValidAnchored", scheduler.ChangeFilter{BranchRe: `a)|(b`}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []*ci.Change
			for _, c := range all {
				if tt.filter.Match(c) {
					got = append(got, c)
				}
			}
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestChangeFilter_Validate(t *testing.T) {
	tests := []struct {
		name   string
		filter scheduler.ChangeFilter
		want   []string
	}{
		{"OK", scheduler.ChangeFilter{BranchRe: `release/\d+`, Category: []string{"x"}}, nil},
		{"One", scheduler.ChangeFilter{BranchRe: `(`}, []string{`BranchRe "(": error parsing regexp: missing closing ): ` + "`(`"}},
		{"Every", scheduler.ChangeFilter{CategoryRe: `[`, BranchRe: `(`, ProjectRe: `*`, RepositoryRe: `a{2,1}`, CodebaseRe: `\`}, []string{
			`CategoryRe "[": error parsing regexp`,
			`BranchRe "(": error parsing regexp`,
			`ProjectRe "*": error parsing regexp`,
			`RepositoryRe "a{2,1}": error parsing regexp`,
			`CodebaseRe "\\": error parsing regexp`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.filter.Validate()
			if tt.want == nil {
				require.NoError(t, err)
				return
			}
			lines := strings.Split(err.Error(), "\n")
			require.Len(t, lines, len(tt.want))
			for i, w := range tt.want {
				assert.Contains(t, lines[i], w)
			}
		})
	}
}

func TestChangeFilter_IsZero(t *testing.T) {
	assert.True(t, (&scheduler.ChangeFilter{}).IsZero())
	assert.False(t, (&scheduler.ChangeFilter{Branch: []string{}}).IsZero())
	assert.False(t, (&scheduler.ChangeFilter{Fn: func(*ci.Change) bool { return true }}).IsZero())
}
