package propjson

import (
	"encoding/json"
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kilnci/kiln/ci"
)

// reference is the encoding Marshal must give: encoding/json's, of the
// same object.
func reference(t testing.TB, p ci.Properties) string {
	m := make(map[string][2]any, len(p))
	for k, v := range p {
		m[k] = [2]any{v.Value, v.Source}
	}
	b, err := json.Marshal(m)
	require.NoError(t, err)
	return string(b)
}

func TestMarshal(t *testing.T) {
	tests := map[string]ci.Properties{
		"empty": {},
		"nil":   nil,
		"kinds": {
			"branch":      {Value: "main", Source: ci.SourceBuild},
			"buildnumber": {Value: 42, Source: ci.SourceBuild},
			"big":         {Value: int64(math.MaxInt64), Source: "s"},
			"small":       {Value: int32(-7), Source: "s"},
			"unsigned":    {Value: uint64(math.MaxUint64), Source: "s"},
			"ratio":       {Value: 0.000001, Source: "s"},
			"huge":        {Value: 1e21, Source: "s"},
			"clean":       {Value: true, Source: "s"},
			"none":        {Value: nil, Source: "s"},
			"list":        {Value: []any{"a", 1.5, nil, map[string]any{"<k>": "v&"}}, Source: "s"},
			"map":         {Value: map[string]any{"z": 1, "a": []string{"x"}}, Source: "s"},
		},
		"escapes": {
			"quote\"back\\slash": {Value: "tab\tnl\ncr\rbs\bff\f\x00\x1f\x7f", Source: "<script>&amp;"},
			"lines\u2028\u2029":  {Value: "caf\xc3\xa9 \xff\xfe broken \xe2\x82 end", Source: "\u2028"},
			"emoji":              {Value: "🔥 ünïcödé", Source: ""},
		},
	}
	for name, p := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := Marshal(p)
			require.NoError(t, err)
			assert.Equal(t, reference(t, p), got)
			back, err := Unmarshal([]byte(got))
			require.NoError(t, err)
			assert.Len(t, back, len(p))
		})
	}
}

func TestMarshal_Unencodable(t *testing.T) {
	_, err := Marshal(ci.Properties{"fn": {Value: func() {}, Source: "s"}})
	require.Error(t, err)
	assert.Contains(t, err.Error(), `property "fn"`)
	_, err = Marshal(ci.Properties{"nan": {Value: math.NaN(), Source: "s"}})
	assert.ErrorContains(t, err, `property "nan"`)
}

func TestUnmarshal(t *testing.T) {
	p, err := Unmarshal([]byte(`{"a":["x","Build"],"n":[3,"Build"],"odd":[1,2]}`))
	require.NoError(t, err)
	assert.Equal(t, ci.Properties{
		"a":   {Value: "x", Source: "Build"},
		"n":   {Value: 3.0, Source: "Build"},
		"odd": {Value: 1.0, Source: ""},
	}, p)
	_, err = Unmarshal([]byte(`{"a":`))
	assert.Error(t, err)
}

// FuzzMarshal checks Marshal against encoding/json on any names, sources
// and string values, and on integers.
func FuzzMarshal(f *testing.F) {
	f.Add("branch", "main", "Build", int64(1))
	f.Add("<a&b>", "\u2028\xff\"", "\x00\t", int64(-1))
	f.Fuzz(func(t *testing.T, name, value, source string, n int64) {
		p := ci.Properties{
			name:         {Value: value, Source: source},
			name + "_n":  {Value: n, Source: value},
			"z" + source: {Value: []any{value, n}, Source: name},
		}
		got, err := Marshal(p)
		require.NoError(t, err)
		assert.Equal(t, reference(t, p), got)
	})
}

// BenchmarkMarshal encodes the properties of a forced one-step build as
// the master stores them at its end.
func BenchmarkMarshal(b *testing.B) {
	p := buildProps()
	for b.Loop() {
		if _, err := Marshal(p); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkMarshal_JSON is the same with encoding/json, as before.
func BenchmarkMarshal_JSON(b *testing.B) {
	p := buildProps()
	for b.Loop() {
		m := make(map[string][2]any, len(p))
		for k, v := range p {
			m[k] = [2]any{v.Value, v.Source}
		}
		if _, err := json.Marshal(m); err != nil {
			b.Fatal(err)
		}
	}
}

func buildProps() ci.Properties {
	p := ci.Properties{}
	for name, v := range map[string]any{"branch": "", "revision": "", "repository": "", "project": "", "codebase": "", "reason": ""} {
		p.Set(name, v, ci.SourceBuild)
	}
	p.Set("scheduler", "force", ci.SourceScheduler)
	p.Set("owner", "someone@example.org", ci.SourceForce)
	p.Set("buildername", "one", ci.SourceBuilder)
	p.Set("workername", "w1", ci.SourceWorker)
	p.Set("builddir", "/srv/kiln/w1/one", ci.SourceWorker)
	p.Set("buildnumber", 1234, ci.SourceBuild)
	return p
}

func TestCol(t *testing.T) {
	var p ci.Properties
	require.NoError(t, Col(&p).Scan(`{"a":["x","Build"]}`))
	assert.Equal(t, ci.Properties{"a": {Value: "x", Source: "Build"}}, p)
	require.NoError(t, Col(&p).Scan([]byte(`{"b":[true,"Worker"]}`)))
	assert.Equal(t, ci.Properties{"b": {Value: true, Source: "Worker"}}, p)
	require.NoError(t, Col(&p).Scan(nil))
	assert.Equal(t, ci.Properties{}, p)
	assert.ErrorContains(t, Col(&p).Scan(int64(42)), "properties column holds int64")
	assert.Error(t, Col(&p).Scan(`{`))
}
