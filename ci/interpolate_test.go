package ci_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kilnci/kiln/ci"
)

func testProps() ci.StaticProps {
	p := ci.Properties{}
	p.Set("arch", "amd64", ci.SourceBuilder)
	p.Set("empty", "", ci.SourceBuilder)
	p.Set("zero", 0, ci.SourceBuilder)
	p.Set("yes", true, ci.SourceBuilder)
	p.Set("no", false, ci.SourceBuilder)
	p.Set("nil", nil, ci.SourceBuilder)
	p.Set("num", float64(42), ci.SourceBuilder)
	p.Set("list", []any{"a", "b"}, ci.SourceBuilder)
	return ci.StaticProps{
		Properties: p,
		SourceStamps: []ci.SourceStamp{
			{Codebase: "", Repository: "https://example.org/ideascube.git", Branch: "v1.2", Revision: "abc123", Project: "ideascube"},
			{Codebase: "docs", Repository: "https://example.org/docs.git", Branch: "main"},
		},
		WorkerName: "worker-amd64",
		WorkerInfo: ci.WorkerInfo{"os_id": "debian", "numcpus": 2},
	}
}

func TestInterpolate_Render(t *testing.T) {
	tests := []struct {
		format string
		kw     []any
		want   string
	}{
		{"plain text", nil, "plain text"},
		{"jessie-%(prop:arch)s-sbuild", nil, "jessie-amd64-sbuild"},
		{"%(prop:missing)s|", nil, "|"},
		{"%(prop:nil)s|", nil, "|"},
		{"%(prop:missing:-dflt)s", nil, "dflt"},
		{"%(prop:empty:-dflt)s", nil, ""},
		{"%(prop:empty:~dflt)s", nil, "dflt"},
		{"%(prop:zero:~dflt)s", nil, "dflt"},
		{"%(prop:arch:~dflt)s", nil, "amd64"},
		{"%(prop:arch:+set)s/%(prop:missing:+set)s", nil, "set/"},
		{"%(prop:arch:?|yes|no)s %(prop:missing:?|yes|no)s", nil, "yes no"},
		{"%(prop:no:?|yes|no)s %(prop:no:#?|yes|no)s %(prop:yes:#?|yes|no)s", nil, "yes no yes"},
		{"%(prop:arch:?/a/b)s", nil, "a"},
		{"%(prop:missing:-%(prop:arch)s)s", nil, "amd64"},
		{"%(prop:missing:?|(x|y)|z)s", nil, "z"},
		{"%(prop:arch:?|(x|y)|z)s", nil, "(x|y)"},
		{"%(prop:num)s %(prop:yes)s %(prop:no)s", nil, "42 True False"},
		{"%(src::branch)s@%(src::revision)s", nil, "v1.2@abc123"},
		{"%(src::repository)s %(src::project)s", nil, "https://example.org/ideascube.git ideascube"},
		{"%(src:docs:branch)s", nil, "main"},
		{"%(src:docs:revision:~HEAD)s", nil, "HEAD"},
		{"%(src:nope:branch:-none)s", nil, "none"},
		{"%(worker:os_id)s %(worker:numcpus)s %(worker:name)s", nil, "debian 2 worker-amd64"},
		{"--dist=%(kw:dist)s", []any{"dist", "jessie"}, "--dist=jessie"},
		{"%(kw:missing:-none)s", []any{"dist", "jessie"}, "none"},
		{"%(kw:r)s", []any{"r", ci.Prop("arch")}, "amd64"},
		{"100%% %(prop:arch)s", nil, "100% amd64"},
		{"%(prop:nested:-a %(kw:x:-b)s c)s", []any{"x", "X"}, "a X c"},
	}
	for _, tt := range tests {
		t.Run(tt.format, func(t *testing.T) {
			in := ci.Interpolate(tt.format, tt.kw...)
			require.NoError(t, in.Validate())
			got, err := ci.RenderString(context.Background(), testProps(), in)
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestInterpolate_Malformed(t *testing.T) {
	tests := []struct {
		format string
		kw     []any
		want   string
	}{
		{"%(prop:arch)", nil, "must be followed by s"},
		{"%(prop:arch", nil, "unclosed"},
		{"%(arch)s", nil, "has no selector"},
		{"%(bogus:arch)s", nil, `invalid selector "bogus"`},
		{"%(prop:a b)s", nil, "must be alphanumeric"},
		{"%(src:branch)s", nil, "must give both codebase and attribute"},
		{"%(prop:arch:!x)s", nil, `invalid modifier "!"`},
		{"%(prop:arch:?|onlyone)s", nil, "two parts"},
		{"%(prop:arch:?(a(b)s", nil, "unclosed"},
		{"50%", nil, "lone %"},
		{"%d", nil, "unsupported %d"},
		{"%(kw:x)s", []any{"x"}, "pairs"},
		{"%(kw:x)s", []any{1, "x"}, "not a string"},
		{"%(prop:x:-%(bad)s)s", nil, "has no selector"},
	}
	for _, tt := range tests {
		t.Run(tt.format, func(t *testing.T) {
			in := ci.Interpolate(tt.format, tt.kw...)
			err := in.Validate()
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
			assert.Contains(t, err.Error(), fmt.Sprintf("%q", tt.format))
			_, rerr := in.Render(context.Background(), testProps())
			assert.Equal(t, err, rerr)
		})
	}
}

func TestInterpolate_Secret(t *testing.T) {
	_, err := ci.Interpolate("%(secret:token)s").Render(context.Background(), testProps())
	require.Error(t, err)
	assert.Contains(t, err.Error(), "no secret provider")
}

func TestRenderList(t *testing.T) {
	ctx := context.Background()
	p := testProps()
	got, err := ci.RenderList(ctx, p, []any{"sbuild", ci.Interpolate("--arch=%(prop:arch)s"), []string{"-v", "-x"}, []any{ci.Prop("list")}})
	require.NoError(t, err)
	assert.Equal(t, []string{"sbuild", "--arch=amd64", "-v", "-x", "a", "b"}, got)

	got, err = ci.RenderList(ctx, p, ci.RenderFunc(func(ctx context.Context, p ci.Props) (any, error) {
		arch, _ := p.Property("arch")
		return []string{"echo", arch.(string)}, nil
	}))
	require.NoError(t, err)
	assert.Equal(t, []string{"echo", "amd64"}, got)

	_, err = ci.RenderList(ctx, p, map[string]any{"a": 1})
	assert.ErrorContains(t, err, "map")
}

func TestProp(t *testing.T) {
	ctx := context.Background()
	p := testProps()
	v, err := ci.Render(ctx, p, ci.Prop("num"))
	require.NoError(t, err)
	assert.Equal(t, float64(42), v)
	v, err = ci.Render(ctx, p, ci.Prop("missing"))
	require.NoError(t, err)
	assert.Nil(t, v)
	v, err = ci.Render(ctx, p, ci.Prop("empty").Default("fallback"))
	require.NoError(t, err)
	assert.Equal(t, "fallback", v)
	v, err = ci.Render(ctx, p, ci.Prop("arch").Default("fallback"))
	require.NoError(t, err)
	assert.Equal(t, "amd64", v)
}

func TestCheckValue(t *testing.T) {
	assert.NoError(t, ci.CheckValue([]any{"a", ci.Interpolate("%(prop:x)s"), 3, []string{"b"}}))
	err := ci.CheckValue([]any{"a", ci.Interpolate("%(prop:x"), struct{}{}})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "[1]: interpolate")
	assert.Contains(t, err.Error(), "[2]: a struct {} is not a string")
}

func ExampleInterpolate() {
	props := ci.Properties{}
	props.Set("arch", "armhf", ci.SourceBuilder)
	build := ci.StaticProps{
		Properties:   props,
		SourceStamps: []ci.SourceStamp{{Branch: "v0.9.1"}},
	}
	for _, r := range []*ci.Interpolation{
		ci.Interpolate("jessie-%(prop:arch)s-sbuild"),
		ci.Interpolate("ideascube_%(src::branch)s_%(prop:arch)s.changes"),
		ci.Interpolate("--dist=%(kw:dist)s", "dist", "jessie"),
		ci.Interpolate("%(prop:dput_method:-local)s"),
	} {
		s, err := ci.RenderString(context.Background(), build, r)
		if err != nil {
			fmt.Println("error:", err)
			continue
		}
		fmt.Println(s)
	}
	// Output:
	// jessie-armhf-sbuild
	// ideascube_v0.9.1_armhf.changes
	// --dist=jessie
	// local
}

func ExampleRenderFunc() {
	upper := ci.RenderFunc(func(ctx context.Context, p ci.Props) (any, error) {
		v, _ := p.Property("arch")
		return fmt.Sprintf("ARCH=%v", v), nil
	})
	props := ci.Properties{}
	props.Set("arch", "i386", ci.SourceBuilder)
	s, _ := ci.RenderString(context.Background(), ci.StaticProps{Properties: props}, upper)
	fmt.Println(s)
	// Output: ARCH=i386
}

func TestInterpolate_RenderShell(t *testing.T) {
	p := testProps()
	p.Properties.Set("branch", "x; rm -rf / #", ci.SourceChange)
	p.Properties.Set("quote", "it's", ci.SourceChange)
	in := ci.Interpolate("git log %(prop:branch)s | grep %(prop:quote)s && echo %(prop:arch)s %(prop:none:-literal $HOME)s")
	got, err := in.RenderShell(context.Background(), p)
	require.NoError(t, err)
	assert.Equal(t, `git log 'x; rm -rf / #' | grep 'it'\''s' && echo amd64 literal $HOME`, got)
	// Plain rendering is unchanged.
	plain, err := ci.RenderString(context.Background(), p, in)
	require.NoError(t, err)
	assert.Equal(t, `git log x; rm -rf / # | grep it's && echo amd64 literal $HOME`, plain)
	assert.Equal(t, "''", ci.ShellQuote(""))
}
