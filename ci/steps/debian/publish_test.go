package debian

import (
	"context"
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestArchiveCompareVersions(t *testing.T) {
	for _, tt := range []struct {
		a, b string
		want int // the sign
	}{
		{"1.0", "1.0", 0},
		{"1.0", "1.00", 0},
		{"0:1.0", "1.0", 0},
		{"1.0", "1.1", -1},
		{"1.10", "1.9", 1},
		{"1.0~rc1", "1.0", -1},
		{"1.0~rc1", "1.0~rc2", -1},
		{"1.0~", "1.0~~", 1},
		{"1.0", "1.0a", -1},
		{"1.0a", "1.0+", -1},
		{"1.0+b1", "1.0", 1},
		{"1:0.9", "2.0", 1},
		{"2:1.0", "10:0.1", -1},
		{"1.0-1", "1.0-2", -1},
		{"1.0-10", "1.0-9", 1},
		{"1.0-1", "1.0", 1},
		{"1.0-1~bpo12+1", "1.0-1", -1},
		{"1.2-3-4", "1.2-3-5", -1},
		{"a", "b", -1},
	} {
		got := archiveCompareVersions(tt.a, tt.b)
		assert.Equal(t, tt.want, archiveSign(got), "%s vs %s", tt.a, tt.b)
		assert.Equal(t, -tt.want, archiveSign(archiveCompareVersions(tt.b, tt.a)), "%s vs %s", tt.b, tt.a)
	}
}

func archiveSign(n int) int {
	switch {
	case n < 0:
		return -1
	case n > 0:
		return 1
	}
	return 0
}

// TestArchiveCompareVersions_Dpkg compares with dpkg itself, where it is
// installed.
func TestArchiveCompareVersions_Dpkg(t *testing.T) {
	dpkg, err := exec.LookPath("dpkg")
	if err != nil {
		t.Skip("dpkg is not installed: the table above is the reference")
	}
	t.Parallel()
	versions := []string{"1.0", "1.0-1", "1:0.1", "1.0~rc1", "1.0+b1", "1.0a", "1.00", "0.9-10", "0.9-9", "1.0-1~bpo12+1"}
	// dpkg is asked once per pair: the comparison the other way round is
	// the opposite (checked of archiveCompareVersions too).
	for i, a := range versions {
		for _, b := range versions[i:] {
			want := 0
			for _, c := range []struct {
				op   string
				sign int
			}{{"lt", -1}, {"gt", 1}} {
				if exec.Command(dpkg, "--compare-versions", a, c.op, b).Run() == nil {
					want = c.sign
					break
				}
			}
			assert.Equal(t, want, archiveSign(archiveCompareVersions(a, b)), "%s vs %s", a, b)
			assert.Equal(t, -want, archiveSign(archiveCompareVersions(b, a)), "%s vs %s", b, a)
		}
	}
}

const publishTestChanges = `Format: 1.8
Date: Wed, 02 Dec 2026 10:00:00 +0000
Source: kiln-hello
Binary: kiln-hello kiln-hello-dbgsym
Architecture: source amd64
Version: 1:1.0-1
Distribution: bookworm
Description:
 kiln-hello - greeting program built by Kiln's tests
Changes:
 kiln-hello (1:1.0-1) bookworm; urgency=medium
 .
   * Release 1.0.
Files:
 380955c224e9b029b5ffc09ea6742339 519 misc optional kiln-hello_1.0-1.dsc
 47dc73bc6ca7bf23c1e1b0679b818d91 1296 misc optional kiln-hello_1.0.orig.tar.xz
 47dc73bc6ca7bf23c1e1b0679b818d91 1296 misc optional kiln-hello_1.0-1.debian.tar.xz
 59b860af50293c7e5e57e31a043b162e 2980 debug optional kiln-hello-dbgsym_1.0-1_amd64.deb
 423d68b8a97aad2b842ac88ca539dd2c 5540 misc optional kiln-hello_1.0-1_amd64.buildinfo
 1515b5d7a28bb08b1cb63615a34a4b34 3120 misc optional kiln-hello_1.0-1_amd64.deb
 1515b5d7a28bb08b1cb63615a34a4b34 3120 misc optional kiln-hello-doc_1.0-1_all.deb
`

func TestPublishParseChanges(t *testing.T) {
	check := func(t *testing.T, text string) {
		t.Helper()
		u, err := publishParseChanges([]byte(text))
		require.NoError(t, err)
		assert.Equal(t, "kiln-hello", u.source)
		assert.Equal(t, "1:1.0-1", u.version)
		assert.Equal(t, []string{"source", "amd64"}, u.archs)
		assert.Equal(t, "kiln-hello 1:1.0-1 (source, amd64)", u.String())
		assert.Len(t, u.files, 7)
		assert.Equal(t, []publishItem{
			{typ: "dsc", name: "kiln-hello", version: "1:1.0-1", arch: "source", basename: "kiln-hello_1.0-1.dsc"},
			{typ: "deb", name: "kiln-hello-dbgsym", version: "1:1.0-1", arch: "amd64", basename: "kiln-hello-dbgsym_1.0-1_amd64.deb"},
			{typ: "deb", name: "kiln-hello", version: "1:1.0-1", arch: "amd64", basename: "kiln-hello_1.0-1_amd64.deb"},
			{typ: "deb", name: "kiln-hello-doc", version: "1:1.0-1", arch: "all", basename: "kiln-hello-doc_1.0-1_all.deb"},
		}, u.items)
		assert.Equal(t, []string{"kiln-hello", "kiln-hello-dbgsym", "kiln-hello-doc"}, u.names())
	}
	t.Run("OK", func(t *testing.T) { check(t, publishTestChanges) })
	t.Run("CRLF", func(t *testing.T) { check(t, strings.ReplaceAll(publishTestChanges, "\n", "\r\n")) })
	t.Run("ClearSigned", func(t *testing.T) {
		signed := "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA512\n\n" +
			publishTestChanges +
			"-----BEGIN PGP SIGNATURE-----\n\niHUEARYKAB0WIQQ=\n-----END PGP SIGNATURE-----\n"
		check(t, signed)
	})
	t.Run("BinNMU", func(t *testing.T) {
		u, err := publishParseChanges([]byte(strings.NewReplacer(
			"Source: kiln-hello", "Source: kiln-hello (1:1.0-1)",
			"Version: 1:1.0-1", "Version: 1:1.0-1+b1",
			"_1.0-1_amd64", "_1.0-1+b1_amd64",
		).Replace(publishTestChanges)))
		require.NoError(t, err)
		assert.Equal(t, "kiln-hello", u.source)
		assert.Equal(t, "1:1.0-1+b1", u.items[1].version)
	})
	for _, tt := range []struct{ name, from, to, want string }{
		{"NoSource", "Source: kiln-hello\n", "", "no Source field"},
		{"NoFiles", "Files:", "Checksums:", "no Files field"},
		{"BadSource", "Source: kiln-hello", "Source: Kiln_Hello", `Source "Kiln_Hello" is not a package name`},
		{"BadVersion", "Version: 1:1.0-1", "Version: 1.0 1", `Version "1.0 1" is not a Debian version`},
		{"PathInFiles", "optional kiln-hello_1.0-1.dsc", "optional ../kiln-hello_1.0-1.dsc", `Files lists "../kiln-hello_1.0-1.dsc", which is not a plain file name`},
		{"HiddenInFiles", "optional kiln-hello_1.0-1.dsc", "optional .dsc", `Files lists ".dsc", which is not a plain file name`},
		{"ShortFilesLine", "3120 misc optional kiln-hello_1.0-1_amd64.deb", "kiln-hello_1.0-1_amd64.deb", "is not: md5sum size section priority name"},
		{"BadDebName", "kiln-hello_1.0-1_amd64.deb", "kiln-hello-1.0-1-amd64.deb", `"kiln-hello-1.0-1-amd64.deb", which is not named package_version_architecture.deb`},
		{"NotControl", "Format: 1.8", "Format 1.8", `line "Format 1.8" is not a field`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := publishParseChanges([]byte(strings.Replace(publishTestChanges, tt.from, tt.to, 1)))
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
	t.Run("NoPackage", func(t *testing.T) {
		_, err := publishParseChanges([]byte("Source: a1\nVersion: 1\nArchitecture: amd64\nFiles:\n 0 1 misc optional a1_1_amd64.buildinfo\n"))
		require.Error(t, err)
		assert.Contains(t, err.Error(), "Files lists no package")
	})
}

func TestPublishUpload_Conflicts(t *testing.T) {
	u, err := publishParseChanges([]byte(publishTestChanges))
	require.NoError(t, err)
	entry := func(typ, arch, name, version, basename string) archiveEntry {
		return archiveEntry{typ: typ, arch: arch, component: "main", name: name, version: version, basename: basename, filekey: "pool/main/k/kiln-hello/" + basename}
	}
	assert.Empty(t, u.conflicts("bookworm", nil))
	assert.Empty(t, u.conflicts("bookworm", []archiveEntry{
		entry("deb", "amd64", "kiln-hello", "1:0.9-1", "kiln-hello_0.9-1_amd64.deb"),
		entry("deb", "arm64", "kiln-hello", "1:1.0-1", "kiln-hello_1.0-1_arm64.deb"),
		entry("dsc", "source", "kiln-hello", "1:0.9-1", "kiln-hello_0.9-1.dsc"),
		entry("deb", "amd64", "other", "1:1.0-1", "other_1.0-1_amd64.deb"),
	}), "older versions are replaced; other architectures and packages do not count")
	assert.Equal(t, "kiln-hello 1:1.0-1 (source, amd64) is already in bookworm; a version is published once: raise the version to publish again",
		u.conflicts("bookworm", []archiveEntry{
			entry("dsc", "source", "kiln-hello", "1:1.0-1", "kiln-hello_1.0-1.dsc"),
			entry("deb", "amd64", "kiln-hello", "1:1.0-1", "kiln-hello_1.0-1_amd64.deb"),
		}))
	assert.Equal(t, "kiln-hello 1:1.0-1 (all) is already in bookworm; a version is published once: raise the version to publish again",
		u.conflicts("bookworm", []archiveEntry{entry("deb", "arm64", "kiln-hello-doc", "1:1.0-1", "kiln-hello-doc_1.0-1_all.deb")}),
		"an arch-all package is in every architecture")
	assert.Equal(t, "bookworm has newer packages than kiln-hello 1:1.0-1: kiln-hello 1:2.0-1 (amd64); raise the version above theirs to publish",
		u.conflicts("bookworm", []archiveEntry{entry("deb", "amd64", "kiln-hello", "1:2.0-1", "kiln-hello_2.0-1_amd64.deb")}))

	files, missing := u.published([]archiveEntry{
		entry("dsc", "source", "kiln-hello", "1:1.0-1", "kiln-hello_1.0-1.dsc"),
		entry("deb", "amd64", "kiln-hello", "1:1.0-1", "kiln-hello_1.0-1_amd64.deb"),
		entry("deb", "amd64", "kiln-hello-dbgsym", "1:1.0-1", "kiln-hello-dbgsym_1.0-1_amd64.deb"),
		entry("deb", "amd64", "kiln-hello-doc", "1:1.0-1", "kiln-hello-doc_1.0-1_all.deb"),
	})
	assert.Empty(t, missing)
	assert.Equal(t, []string{
		"pool/main/k/kiln-hello/kiln-hello_1.0-1.dsc",
		"pool/main/k/kiln-hello/kiln-hello_1.0.orig.tar.xz",
		"pool/main/k/kiln-hello/kiln-hello_1.0-1.debian.tar.xz",
		"pool/main/k/kiln-hello/kiln-hello-dbgsym_1.0-1_amd64.deb",
		"pool/main/k/kiln-hello/kiln-hello_1.0-1_amd64.deb",
		"pool/main/k/kiln-hello/kiln-hello-doc_1.0-1_all.deb",
	}, files)
	_, missing = u.published([]archiveEntry{entry("deb", "amd64", "kiln-hello", "1:2.0-1", "kiln-hello_2.0-1_amd64.deb")})
	assert.Equal(t, []string{"kiln-hello_1.0-1.dsc", "kiln-hello-dbgsym_1.0-1_amd64.deb", "kiln-hello_1.0-1_amd64.deb", "kiln-hello-doc_1.0-1_all.deb"}, missing)
}

func TestPublishCheckName(t *testing.T) {
	for _, ok := range []string{"kiln-hello_1.0_amd64.changes", "a.changes", "a_1.0~rc1_source.changes"} {
		assert.Empty(t, publishCheckName(ok), ok)
	}
	for _, bad := range []string{"", ".changes", ".a.changes", "../x.changes", "a/b.changes", `a\b.changes`, "x.deb", "x.changes.gz", "a..b.changes", "a\n.changes"} {
		assert.NotEmpty(t, publishCheckName(bad), "%q", bad)
	}
}

func TestRepreproErrorLine(t *testing.T) {
	exit := errors.New("exit status 255")
	for _, tt := range []struct{ stderr, want string }{
		{"Error: 'x.deb' has the wrong architecture to add it to trixie!\nThere have been errors!\n", "Error: 'x.deb' has the wrong architecture to add it to trixie!"},
		{"Warning: something odd\nCannot find file 'incoming/x.tar.xz' needed by 'incoming/x.changes'!\nThere have been errors!\n", "Cannot find file 'incoming/x.tar.xz' needed by 'incoming/x.changes'!"},
		{"Exporting indices...\nERROR: could not sign\nThere have been errors!\n", "ERROR: could not sign"},
		{"There have been errors!\n", "exit status 255"},
		{"", "exit status 255"},
	} {
		assert.Equal(t, tt.want, repreproErrorLine(tt.stderr, exit))
	}
}

func TestArchiveLock(t *testing.T) {
	a := &Archive{}
	unlock, err := a.lock(context.Background())
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	_, err = a.lock(ctx)
	require.ErrorIs(t, err, context.DeadlineExceeded, "a stopped build stops waiting for its turn")
	unlock()
	unlock, err = a.lock(context.Background())
	require.NoError(t, err)
	unlock()
}
