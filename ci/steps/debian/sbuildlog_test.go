package debian

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func readLog(t *testing.T, name string) *SbuildReport {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", name))
	require.NoError(t, err)
	defer f.Close()
	r, err := ReadSbuildLog(f)
	require.NoError(t, err)
	return r
}

// The logs in testdata are sbuild 0.85's own output, building kiln-hello
// (internal/debtest) in unshare mode and schroot mode.
func TestReadSbuildLog(t *testing.T) {
	t.Run("Native", func(t *testing.T) {
		r := readLog(t, "sbuild-amd64.log")
		assert.Equal(t, "kiln-hello", r.Package)
		assert.Equal(t, "1.0", r.Version)
		assert.Equal(t, "bookworm", r.Distribution)
		assert.Equal(t, "amd64", r.HostArch)
		assert.Equal(t, "amd64", r.BuildArch)
		assert.Equal(t, "successful", r.Status)
		assert.Empty(t, r.FailStage)
		assert.Equal(t, "full", r.Summary["Build Type"])
		assert.Equal(t, []string{"kiln-hello_1.0_amd64.changes"}, r.Changes)
		assert.Equal(t, "kiln-hello_1.0_amd64.changes", r.MainChanges())
		assert.ElementsMatch(t, []string{"kiln-hello_1.0.dsc", "kiln-hello_1.0.tar.xz", "kiln-hello-dbgsym_1.0_amd64.deb",
			"kiln-hello_1.0_amd64.buildinfo", "kiln-hello_1.0_amd64.deb"}, r.Files)
		assert.ElementsMatch(t, []string{"kiln-hello-dbgsym_1.0_amd64.deb", "kiln-hello_1.0_amd64.deb"}, r.Debs())
		assert.Empty(t, r.Errors)
		assert.Empty(t, r.MissingChroot)
	})
	t.Run("Cross", func(t *testing.T) {
		r := readLog(t, "sbuild-armhf-cross.log")
		assert.Equal(t, "armhf", r.HostArch)
		assert.Equal(t, "amd64", r.BuildArch)
		assert.Equal(t, "successful", r.Status)
		assert.Equal(t, "cross nocheck", r.Summary["Build Profiles"])
		assert.Equal(t, "kiln-hello_1.0_armhf.changes", r.MainChanges())
		assert.ElementsMatch(t, []string{"kiln-hello-dbgsym_1.0_armhf.deb", "kiln-hello_1.0_armhf.deb"}, r.Debs())
	})
	t.Run("BuildFailed", func(t *testing.T) {
		r := readLog(t, "sbuild-failed-build.log")
		assert.Equal(t, "attempted", r.Status)
		assert.Equal(t, "build", r.FailStage)
		assert.Equal(t, "Build", r.Section)
		assert.Empty(t, r.Changes)
		assert.Equal(t, []string{"Build failure (dpkg-buildpackage died)", "Build failure (dpkg-buildpackage died)"}, r.Errors)
		tail := strings.Join(r.Tail, "\n")
		assert.Contains(t, tail, "compiling the broken part")
		assert.Contains(t, tail, "make[1]: *** [debian/rules:8: override_dh_auto_build] Error 1")
		assert.True(t, strings.HasSuffix(tail, "dpkg-buildpackage: error: debian/rules binary subprocess returned exit status 2"), tail)
		assert.NotContains(t, tail, "Build finished at", "sbuild's framing is left out")
		assert.NotContains(t, tail, "Purging", "the cleanup is not the failing command")
		assert.LessOrEqual(t, len(r.Tail), TailLines)
		assert.Equal(t, "make[1]: *** [debian/rules:8: override_dh_auto_build] Error 1", r.FailingLine())
	})
	t.Run("NoTarball", func(t *testing.T) {
		r := readLog(t, "sbuild-no-tarball.log")
		assert.Equal(t, "failed", r.Status)
		assert.Equal(t, "create-session", r.FailStage)
		assert.Equal(t, "/var/cache/kiln/nonexistent.tar.zst", r.MissingChroot)
	})
	t.Run("NoSchroot", func(t *testing.T) {
		r := readLog(t, "sbuild-no-schroot.log")
		assert.Equal(t, "failed", r.Status)
		assert.Equal(t, "create-session", r.FailStage)
		assert.Equal(t, "jessie-amd64-sbuild", r.MissingChroot)
		assert.Equal(t, "jessie", r.Distribution)
	})
}

func TestSbuildParser_Bounded(t *testing.T) {
	// A log of any length keeps a bounded tail.
	var p sbuildParser
	p.line("+------------------------------------------------------------------------------+")
	p.line("| Build                                                                        |")
	p.line("+------------------------------------------------------------------------------+")
	for i := range 100000 {
		p.line(strings.Repeat("x", i%200))
	}
	r := p.report()
	assert.Len(t, r.Tail, TailLines)
	assert.Equal(t, "Build", r.Section)
}
