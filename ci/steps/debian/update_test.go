package debian_test

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kilnci/kiln/ci"
	"github.com/kilnci/kiln/ci/citest"
	"github.com/kilnci/kiln/ci/steps/debian"
	"github.com/kilnci/kiln/internal/debtest"
	"github.com/kilnci/kiln/internal/testenv"
)

func TestSbuildUpdate(t *testing.T) {
	testenv.NeedTool(t, "sbuild-update")
	t.Run("NoChroot", func(t *testing.T) {
		m := start(t, nil, &debian.SbuildUpdate{Chroot: "nowhere-amd64-sbuild"})
		b := m.Build(t, citest.Request{Builder: "pkg"})
		require.Equal(t, ci.Failure, b.Results())
		assert.Equal(t, "chroot nowhere-amd64-sbuild not found; create it with: sudo sbuild-createchroot --arch=amd64 nowhere "+
			"/srv/chroot/nowhere-amd64-sbuild (failure)", b.Step("sbuild-update").StateString)
		assert.Contains(t, b.Header("sbuild-update", "stdio"), "sbuild-update --update --dist-upgrade --clean --autoclean --autoremove nowhere-amd64-sbuild\n")
	})
	t.Run("Refused", func(t *testing.T) {
		m := start(t, map[string]any{"arch": "--help x"}, &debian.SbuildUpdate{Chroot: ci.Interpolate("%(prop:arch)s")})
		b := m.Build(t, citest.Request{Builder: "pkg"})
		require.Equal(t, ci.Failure, b.Results())
		assert.Equal(t, `refused: "--help x" is not a chroot name (failure)`, b.Step("sbuild-update").StateString)
	})
	t.Run("SudoAsksPassword", func(t *testing.T) {
		dir := t.TempDir()
		stub(t, dir, "sudo", "echo 'sudo: a password is required' >&2; exit 1\n")
		m := start(t, nil, &debian.SbuildUpdate{Chroot: "jessie-armhf-sbuild", Sudo: "true", Env: pathWith(dir)})
		b := m.Build(t, citest.Request{Builder: "pkg"})
		require.Equal(t, ci.Failure, b.Results())
		assert.Equal(t, "sudo refused to run sbuild-update without a password (sudo: a password is required): allow the worker's user "+
			"to run it, with a sudoers line such as: buildbot ALL=(root) NOPASSWD: /usr/bin/sbuild-update (failure)", b.Step("sbuild-update").StateString)
		assert.Contains(t, b.Header("sbuild-update", "stdio"), "sudo -n sbuild-update --update")
	})
	t.Run("Update", func(t *testing.T) {
		testenv.SkipIfShort(t, "upgrades a schroot chroot")
		debtest.Schroot(t, debtest.DefaultSchroot)
		testenv.NeedTool(t, "sudo")
		m := start(t, nil, &debian.SbuildUpdate{Chroot: debtest.DefaultSchroot, Sudo: true})
		b := m.Build(t, citest.Request{Builder: "pkg"})
		require.Equal(t, ci.Success, b.Results(), b.Log("sbuild-update", "stdio"))
		assert.Equal(t, "updated "+debtest.DefaultSchroot, b.Step("sbuild-update").StateString)
		assert.Contains(t, b.Log("sbuild-update", "stdio"), debtest.DefaultSchroot+": Performing autoremove.")
	})
}

// TestSbuildUpdate_TakeTurns: two upgrades of one chroot on one machine,
// from two workers, take turns on the machine's lock file.
func TestSbuildUpdate_TakeTurns(t *testing.T) {
	testenv.NeedTool(t, "flock")
	dir := t.TempDir()
	journal := filepath.Join(dir, "journal")
	stub(t, dir, "sbuild-update", `echo "start $$" >> "$JOURNAL"; sleep 0.3; echo "end $$" >> "$JOURNAL"`+"\n")
	env := pathWith(dir)
	env["JOURNAL"] = journal
	lock := filepath.Join(dir, "chroot.lock")
	update := func() ci.Step {
		return &debian.SbuildUpdate{Chroot: "bookworm-amd64-sbuild", Env: env, LockFile: lock}
	}
	m := citest.Start(t, ci.MasterConfig{
		BaseDir: t.TempDir(),
		Workers: []ci.WorkerConfig{{Name: "w1"}, {Name: "w2"}},
		Builders: []ci.BuilderConfig{
			{Name: "amd64", Workers: []string{"w1"}, Steps: []ci.Step{update()}},
			{Name: "armhf", Workers: []string{"w2"}, Steps: []ci.Step{update()}},
		},
	})
	bs := m.Submit(t, citest.Request{Builders: []string{"amd64", "armhf"}})
	builds := m.WaitBuildset(t, bs)
	require.Len(t, builds, 2)
	for _, b := range builds {
		require.Equal(t, ci.Success, b.Results(), b.Log("sbuild-update", "stdio"))
		assert.Contains(t, b.Header("sbuild-update", "stdio"), "flock --wait 3600 -- "+lock+" sbuild-update --update")
	}
	lines := argvOf(t, journal)
	require.Len(t, lines, 4)
	for i := 0; i < 4; i += 2 {
		start, end := strings.TrimPrefix(lines[i], "start "), strings.TrimPrefix(lines[i+1], "end ")
		assert.Equal(t, start, end, "one upgrade ends before the other starts: %q", lines)
	}

	// LockFile "" runs it bare.
	bare := start(t, nil, &debian.SbuildUpdate{Chroot: "bookworm-amd64-sbuild", Env: env, LockFile: ""})
	b := bare.Build(t, citest.Request{Builder: "pkg"})
	require.Equal(t, ci.Success, b.Results())
	assert.NotContains(t, b.Header("sbuild-update", "stdio"), "flock")
}
