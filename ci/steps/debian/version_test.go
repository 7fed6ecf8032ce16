package debian_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kilnci/kiln/ci"
	"github.com/kilnci/kiln/ci/citest"
	"github.com/kilnci/kiln/ci/steps"
	"github.com/kilnci/kiln/ci/steps/debian"
)

func TestValidVersion(t *testing.T) {
	for _, v := range []string{"1.0", "0.9.1", "1.0-1", "2:1.0-1", "1.0~rc1", "1.0+dfsg-2+deb12u1", "1.0-1-2", "20261202", "0:1", "1.0-1~bpo12+1"} {
		assert.NoError(t, debian.ValidVersion(v), v)
	}
	for v, why := range map[string]string{
		"":           "the version is empty",
		"v9;rm":      `the upstream version "v9;rm" must start with a digit`,
		"9;rm":       `the upstream version "9;rm" may not contain ';'`,
		"1.0-":       "the Debian revision after the last '-' is empty",
		"-1":         "the upstream version is empty",
		"a:1.0":      `the epoch "a" before ':' must be a number`,
		":1.0":       `the epoch "" before ':' must be a number`,
		"1.0-1_2":    `the Debian revision "1_2" may not contain '_'`,
		"1.0 rm":     `the upstream version "1.0 rm" may not contain ' '`,
		"1.0$(id)":   `the upstream version "1.0$(id)" may not contain '$'`,
		"1:2:3":      `the upstream version "2:3" may not contain ':'`,
		"1.0\n-1":    `the upstream version "1.0\n" may not contain '\n'`,
		"master":     `the upstream version "master" must start with a digit`,
		"1.0/../etc": `the upstream version "1.0/../etc" may not contain '/'`,
	} {
		err := debian.ValidVersion(v)
		if assert.Error(t, err, "%q", v) {
			assert.Equal(t, why, err.Error(), "%q", v)
		}
	}
}

func FuzzValidVersion(f *testing.F) {
	for _, s := range []string{"1.0", "2:1.0-1", "v9;rm", "1.0-", "1:2:3"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		if debian.ValidVersion(v) != nil {
			return
		}
		// What passes is made only of the characters a version may hold.
		for _, r := range v {
			ok := r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r == '.' || r == '+' || r == '~' || r == '-' || r == ':'
			if !ok {
				t.Fatalf("%q passed with %q", v, r)
			}
		}
	})
}

// TestCheckVersion: a tag that is not a Debian version stops the build in
// the first step, before anything runs on the worker.
func TestCheckVersion(t *testing.T) {
	marker := filepath.Join(t.TempDir(), "ran")
	check := &debian.CheckVersion{StepOptions: ci.StepOptions{HaltOnFailure: true}, Version: ci.Interpolate("%(src::branch)s"),
		What: "tag", Property: "tag_version"}
	m := start(t, nil, check, &steps.ShellCommand{Command: []string{"touch", marker}})

	b := m.Build(t, citest.Request{Builder: "pkg", SourceStamp: ci.SourceStamp{Branch: "v9;rm"}})
	require.Equal(t, ci.Failure, b.Results())
	assert.Equal(t, `tag "v9;rm" is not a Debian version: the upstream version "v9;rm" must start with a digit (failure)`, b.Step("version").StateString)
	assert.Len(t, b.Steps, 1, "the build stopped at the check")
	_, err := os.Stat(marker)
	assert.ErrorIs(t, err, os.ErrNotExist, "nothing ran")
	assert.Nil(t, b.Property("tag_version"))

	b = m.Build(t, citest.Request{Builder: "pkg", SourceStamp: ci.SourceStamp{Branch: "1.0-1"}})
	require.Equal(t, ci.Success, b.Results())
	assert.Equal(t, "tag 1.0-1", b.Step("version").StateString)
	assert.Equal(t, "1.0-1", b.Property("tag_version"))
	assert.FileExists(t, marker)
}

// TestCheckVersion_Rendered: What and Property are rendered when the
// build runs.
func TestCheckVersion_Rendered(t *testing.T) {
	check := &debian.CheckVersion{Version: ci.Prop("v"), What: ci.Interpolate("%(prop:kind:-version)s"),
		Property: ci.Interpolate("%(prop:kind)s_version")}
	m := start(t, map[string]any{"kind": "release"}, check)
	b := m.Build(t, citest.Request{Builder: "pkg", Properties: map[string]any{"v": "2:1.0-1"}})
	require.Equal(t, ci.Success, b.Results())
	assert.Equal(t, "release 2:1.0-1", b.Step("version").StateString)
	assert.Equal(t, "2:1.0-1", b.Property("release_version"))

	b = m.Build(t, citest.Request{Builder: "pkg", Properties: map[string]any{"v": "v1", "kind": "upload"}})
	require.Equal(t, ci.Failure, b.Results())
	assert.Equal(t, `upload "v1" is not a Debian version: the upstream version "v1" must start with a digit (failure)`, b.Step("version").StateString)
	assert.Nil(t, b.Property("upload_version"))

	err := (&debian.CheckVersion{Version: "1.0", What: struct{}{}, Property: []int{1}}).Validate()
	require.Error(t, err)
	assert.Contains(t, err.Error(), "What: ")
	assert.Contains(t, err.Error(), "Property: ")
}
