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
	"github.com/kilnci/kiln/internal/debtest"
	"github.com/kilnci/kiln/internal/testenv"
)

// fakeSbuild is an sbuild that records its arguments and prints a log
// that the real sbuild printed (testdata), exiting with the code it did.
// It runs the Sbuild step without a chroot; the Ideascube end-to-end test
// runs the real sbuild.
func fakeSbuild(t *testing.T, log string, rc int) (env map[string]any, argvFile string) {
	t.Helper()
	dir := t.TempDir()
	argvFile = filepath.Join(dir, "argv")
	stub(t, dir, "sbuild", `printf '%s\n' "$@" > "$FAKE_ARGV"; pwd > "$FAKE_ARGV.pwd"; cat "$FAKE_LOG"; exit "$FAKE_RC"`+"\n")
	env = pathWith(dir)
	env["FAKE_ARGV"] = argvFile
	env["FAKE_LOG"] = abs(t, log)
	env["FAKE_RC"] = ci.Interpolate("%(kw:rc)s", "rc", rc)
	return env, argvFile
}

func TestSbuild(t *testing.T) {
	t.Run("Native", func(t *testing.T) {
		env, argv := fakeSbuild(t, "sbuild-amd64.log", 0)
		m := start(t, map[string]any{"arch": "amd64"}, &debian.Sbuild{
			Distribution:      "bookworm",
			Arch:              ci.Interpolate("%(prop:arch)s"),
			ChrootMode:        debian.ModeUnshare,
			Chroot:            "/var/cache/kiln/bookworm-amd64.tar.zst",
			ExtraRepositories: []any{"deb http://example.org/debian bookworm-backports main"},
			BuildDepResolver:  "aptitude",
			Source:            true,
			ArchAll:           ci.Interpolate("%(prop:all:-true)s"),
			CleanSource:       false,
			Env:               env,
		})
		b := m.Build(t, citest.Request{Builder: "pkg"})
		require.Equal(t, ci.Success, b.Results())
		dir := builderDir(m)
		assert.Equal(t, []string{"--verbose", "--dist=bookworm", "--arch=amd64", "--chroot-mode=unshare",
			"--chroot=/var/cache/kiln/bookworm-amd64.tar.zst", "--build-dir=" + dir,
			"--extra-repository=deb http://example.org/debian bookworm-backports main", "--build-dep-resolver=aptitude",
			"--source", "--arch-all", "--no-clean-source", "--no-run-lintian"}, argvOf(t, argv))
		pwd, err := os.ReadFile(argv + ".pwd")
		require.NoError(t, err)
		assert.Equal(t, filepath.Join(dir, steps.DefaultWorkdir)+"\n", string(pwd), "sbuild runs in the checkout")

		s := b.Step("sbuild")
		assert.Equal(t, "kiln-hello 1.0 (amd64): successful, 2 .deb", s.StateString)
		assert.Equal(t, "kiln-hello", b.Property(debian.PropPackage))
		assert.Equal(t, "1.0", b.Property(debian.PropVersion))
		assert.Equal(t, "successful", b.Property(debian.PropStatus))
		assert.Equal(t, "kiln-hello_1.0_amd64.changes", b.Property(debian.PropChanges))
		assert.ElementsMatch(t, []any{"kiln-hello_1.0_amd64.deb", "kiln-hello-dbgsym_1.0_amd64.deb"}, b.Property(debian.PropDebs))
		assert.Contains(t, b.Log("sbuild", "stdio"), "| Summary ", "sbuild's whole output is the log")
		summary := b.Log("sbuild", "summary")
		assert.Contains(t, summary, "Status: successful\n")
		assert.Contains(t, summary, "Changes: kiln-hello_1.0_amd64.changes\n")
		assert.Contains(t, summary, "File: kiln-hello_1.0.dsc\n")
	})

	t.Run("Cross", func(t *testing.T) {
		env, argv := fakeSbuild(t, "sbuild-armhf-cross.log", 0)
		m := start(t, nil, &debian.Sbuild{Distribution: "bookworm", BuildArch: "amd64", HostArch: "armhf", BuildDir: "out", Env: env})
		b := m.Build(t, citest.Request{Builder: "pkg"})
		require.Equal(t, ci.Success, b.Results())
		assert.Equal(t, []string{"--verbose", "--dist=bookworm", "--build=amd64", "--host=armhf", "--build-dir=" + filepath.Join(builderDir(m), "out"),
			"--no-run-lintian"}, argvOf(t, argv))
		assert.Equal(t, "kiln-hello 1.0 (armhf, cross-built on amd64): successful, 2 .deb", b.Step("sbuild").StateString)
		assert.Equal(t, "out/kiln-hello_1.0_armhf.changes", b.Property(debian.PropChanges))
	})

	// The fields Native leaves out, rendered: keys of extra repositories,
	// arch-any, lintian run by sbuild, extra arguments before the package.
	t.Run("MoreFields", func(t *testing.T) {
		env, argv := fakeSbuild(t, "sbuild-amd64.log", 0)
		m := start(t, map[string]any{"keys": "/srv/keys", "any": "no", "lint": "yes", "jobs": 3}, &debian.Sbuild{
			Distribution:        "bookworm",
			ExtraRepositoryKeys: []any{"/etc/kiln/backports.asc", ci.Interpolate("%(prop:keys)s/project.asc")},
			ArchAny:             ci.Interpolate("%(prop:any)s"),
			RunLintian:          ci.Interpolate("%(prop:lint)s"),
			ExtraArgs:           []any{"--purge=never", ci.Interpolate("--jobs=%(prop:jobs)s"), ci.Interpolate("%(prop:unset:-)s")},
			Package:             ci.Interpolate("kiln-hello_%(prop:version:-1.0)s.dsc"),
			Env:                 env,
		})
		b := m.Build(t, citest.Request{Builder: "pkg"})
		require.Equal(t, ci.Success, b.Results())
		assert.Equal(t, []string{"--verbose", "--dist=bookworm", "--build-dir=" + builderDir(m),
			"--extra-repository-key=/etc/kiln/backports.asc", "--extra-repository-key=/srv/keys/project.asc",
			"--no-arch-any", "--run-lintian", "--purge=never", "--jobs=3", "kiln-hello_1.0.dsc"}, argvOf(t, argv),
			"an extra argument that renders empty is left out")

		// The switches the other way, as plain bools.
		env, argv = fakeSbuild(t, "sbuild-amd64.log", 0)
		m = start(t, nil, &debian.Sbuild{ArchAny: true, RunLintian: false, ExtraArgs: "--no-apt-update", Env: env})
		b = m.Build(t, citest.Request{Builder: "pkg"})
		require.Equal(t, ci.Success, b.Results())
		assert.Equal(t, []string{"--verbose", "--build-dir=" + builderDir(m), "--arch-any", "--no-run-lintian", "--no-apt-update"}, argvOf(t, argv))

		// A switch that is neither true nor false is refused before
		// sbuild runs.
		env, argv = fakeSbuild(t, "sbuild-amd64.log", 0)
		m = start(t, map[string]any{"any": "maybe"}, &debian.Sbuild{ArchAny: ci.Interpolate("%(prop:any)s"), Env: env})
		b = m.Build(t, citest.Request{Builder: "pkg"})
		assert.Equal(t, ci.Failure, b.Results())
		assert.Equal(t, `refused: arch any: "maybe" is neither true nor false (failure)`, b.Step("sbuild").StateString)
		assert.NoFileExists(t, argv, "sbuild never ran")
	})

	t.Run("BuildFails", func(t *testing.T) {
		env, _ := fakeSbuild(t, "sbuild-failed-build.log", 2)
		m := start(t, nil, &debian.Sbuild{Distribution: "bookworm", Env: env})
		b := m.Build(t, citest.Request{Builder: "pkg"})
		require.Equal(t, ci.Failure, b.Results())
		assert.Equal(t, "kiln-hello 1.0 (amd64): attempted, failed at stage build: make[1]: *** [debian/rules:8: override_dh_auto_build] Error 1 (failure)",
			b.Step("sbuild").StateString)
		summary := b.Log("sbuild", "summary")
		assert.Contains(t, summary, "Fail-Stage: build\n")
		assert.Contains(t, summary, "Last lines of Build:\n")
		assert.Contains(t, summary, "  compiling the broken part\n")
		assert.Contains(t, summary, "  dpkg-buildpackage: error: debian/rules binary subprocess returned exit status 2\n")
		assert.Contains(t, summary, "  E: Build failure (dpkg-buildpackage died)\n")
		assert.Nil(t, b.Property(debian.PropChanges), "a failed build has no .changes")
		assert.Equal(t, "attempted", b.Property(debian.PropStatus))
	})

	t.Run("NoSchroot", func(t *testing.T) {
		env, _ := fakeSbuild(t, "sbuild-no-schroot.log", 1)
		m := start(t, nil, &debian.Sbuild{Distribution: "jessie", Arch: "amd64", Env: env})
		b := m.Build(t, citest.Request{Builder: "pkg"})
		require.Equal(t, ci.Failure, b.Results())
		assert.Equal(t, "kiln-hello 1.0 (amd64): failed, failed at stage create-session: chroot jessie-amd64-sbuild not found; "+
			"create it with: sudo sbuild-createchroot --arch=amd64 jessie /srv/chroot/jessie-amd64-sbuild (failure)", b.Step("sbuild").StateString)
	})

	t.Run("NoTarball", func(t *testing.T) {
		env, _ := fakeSbuild(t, "sbuild-no-tarball.log", 1)
		m := start(t, nil, &debian.Sbuild{Distribution: "bookworm", ChrootMode: debian.ModeUnshare,
			Chroot: "/var/cache/kiln/nonexistent.tar.zst", Env: env})
		b := m.Build(t, citest.Request{Builder: "pkg"})
		require.Equal(t, ci.Failure, b.Results())
		assert.Contains(t, b.Step("sbuild").StateString, "chroot /var/cache/kiln/nonexistent.tar.zst not found; "+
			"create it with: mmdebstrap --variant=buildd --arch=amd64 bookworm /var/cache/kiln/nonexistent.tar.zst")
	})

	t.Run("NoSummary", func(t *testing.T) {
		dir := t.TempDir()
		stub(t, dir, "sbuild", "echo 'dpkg-source: error: cannot read debian/changelog'; echo 'E: Error building source package' ; exit 1\n")
		m := start(t, nil, &debian.Sbuild{Env: pathWith(dir)})
		b := m.Build(t, citest.Request{Builder: "pkg"})
		require.Equal(t, ci.Failure, b.Results())
		assert.Equal(t, "sbuild: sbuild failed (exit code 1) before building: dpkg-source: error: cannot read debian/changelog (failure)",
			b.Step("sbuild").StateString)
	})

	t.Run("Refused", func(t *testing.T) {
		env, argv := fakeSbuild(t, "sbuild-amd64.log", 0)
		m := start(t, map[string]any{"dir": "../../elsewhere", "pkg": "--anything-dangerous"},
			&debian.Sbuild{StepOptions: ci.StepOptions{Name: "outside"}, BuildDir: ci.Interpolate("%(prop:dir)s"), Env: env},
			&debian.Sbuild{StepOptions: ci.StepOptions{Name: "option"}, Package: ci.Interpolate("%(prop:pkg)s"), Env: env},
			&debian.Sbuild{StepOptions: ci.StepOptions{Name: "archs"}, Arch: "amd64", HostArch: "armhf", Env: env})
		b := m.Build(t, citest.Request{Builder: "pkg"})
		assert.Equal(t, ci.Failure, b.Step("outside").Results)
		assert.Equal(t, `refused: build dir "../../elsewhere" is outside the build folder (failure)`, b.Step("outside").StateString)
		assert.Equal(t, `refused: package "--anything-dangerous" is not a package name nor a .dsc file (failure)`, b.Step("option").StateString)
		assert.Equal(t, `refused: arch amd64 and host arch armhf differ: a cross build gives BuildArch and HostArch (failure)`, b.Step("archs").StateString)
		assert.NoFileExists(t, argv, "sbuild never ran")
	})
}

// TestSbuild_MissingChroot runs the real sbuild on a chroot the machine
// does not have, a schroot one (named, or sbuild's default for the
// distribution) and a tarball: each fails at once, naming the chroot and
// the command that creates it.
func TestSbuild_MissingChroot(t *testing.T) {
	testenv.SkipIfShort(t, "runs sbuild")
	debtest.NeedTools(t, "sbuild", "schroot", "dpkg-source")
	// A distribution no machine has a chroot for, so that the test never
	// depends on what this one has.
	const dist = "kiln-nowhere"
	tarball := filepath.Join(t.TempDir(), "nowhere-amd64.tar.zst")
	m := start(t, map[string]any{"dist": dist, "tarball": tarball},
		&debian.Sbuild{StepOptions: ci.StepOptions{Name: "named"}, Distribution: ci.Interpolate("%(prop:dist)s"), Arch: "amd64",
			Chroot: ci.Interpolate("%(prop:dist)s-amd64-sbuild"), CleanSource: false},
		&debian.Sbuild{StepOptions: ci.StepOptions{Name: "default"}, Distribution: dist, Arch: "amd64", CleanSource: false},
		&debian.Sbuild{StepOptions: ci.StepOptions{Name: "alias"}, Distribution: dist, Arch: "amd64", Chroot: "ideascube-sbuild", CleanSource: false},
		&debian.Sbuild{StepOptions: ci.StepOptions{Name: "tarball"}, Distribution: "bookworm", Arch: "amd64", ChrootMode: debian.ModeUnshare,
			Chroot: ci.Prop("tarball"), CleanSource: false})
	require.NoError(t, debtest.Write(filepath.Join(builderDir(m), steps.DefaultWorkdir), debtest.Source{}))
	b := m.Build(t, citest.Request{Builder: "pkg"})

	schroot := "sudo sbuild-createchroot --arch=amd64 " + dist + " /srv/chroot/" + dist + "-amd64-sbuild"
	for step, want := range map[string][2]string{
		"named":   {dist + "-amd64-sbuild", schroot},
		"default": {dist + "-amd64-sbuild", schroot},
		"alias":   {"ideascube-sbuild", "sudo sbuild-createchroot --arch=amd64 --alias=ideascube-sbuild " + dist + " /srv/chroot/" + dist + "-amd64-sbuild"},
		"tarball": {tarball, "mmdebstrap --variant=buildd --arch=amd64 bookworm " + tarball},
	} {
		s := b.Step(step)
		assert.Equal(t, ci.Failure, s.Results, step)
		assert.Equal(t, "kiln-hello 1.0 (amd64): failed, failed at stage create-session: chroot "+want[0]+" not found; create it with: "+want[1]+" (failure)",
			s.StateString, step)
		assert.Contains(t, b.Log(step, "summary"), "\nThe chroot "+want[0]+" was not found. Create it on the worker with:\n  "+want[1]+"\n", step)
		assert.Contains(t, b.Log(step, "stdio"), "Fail-Stage: create-session", step)
	}
	assert.Equal(t, "failed", b.Property(debian.PropStatus))
	assert.Nil(t, b.Property(debian.PropChanges))
}

// TestSwitch_Refused: an on/off field of any step that renders neither
// true nor false fails the step, naming the field, before the tool runs.
func TestSwitch_Refused(t *testing.T) {
	dir := t.TempDir()
	for _, tool := range []string{"lintian", "dput", "sudo", "sbuild-update", "flock"} {
		stub(t, dir, tool, "touch "+filepath.Join(dir, "ran")+"\n")
	}
	env := pathWith(dir)
	maybe := ci.Interpolate("%(prop:maybe)s")
	m := start(t, map[string]any{"maybe": "perhaps"},
		&debian.Lintian{File: "x.changes", Pedantic: maybe, Env: env},
		&debian.Dput{Host: "local", Changes: "x.changes", Unchecked: maybe, Env: env},
		&debian.SbuildUpdate{Chroot: "bookworm-amd64-sbuild", Sudo: maybe, Env: env})
	b := m.Build(t, citest.Request{Builder: "pkg"})
	for step, field := range map[string]string{"lintian": "pedantic", "dput": "unchecked", "sbuild-update": "sudo"} {
		assert.Equal(t, ci.Failure, b.Step(step).Results, step)
		assert.Equal(t, `refused: `+field+`: "perhaps" is neither true nor false (failure)`, b.Step(step).StateString)
	}
	assert.NoFileExists(t, filepath.Join(dir, "ran"), "no tool ran")
}
