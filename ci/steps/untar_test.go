package steps

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// buildbot-worker's tarfile names the uploaded folder itself "/"; that
// entry is the destination, not a path outside it.
func TestUntar_RootEntry(t *testing.T) {
	archive := func(names ...string) *bytes.Buffer {
		var b bytes.Buffer
		tw := tar.NewWriter(&b)
		for _, n := range names {
			h := &tar.Header{Name: n, Mode: 0o644, Typeflag: tar.TypeReg, Size: 2}
			if n[len(n)-1] == '/' {
				h.Typeflag, h.Mode, h.Size = tar.TypeDir, 0o755, 0
			}
			require.NoError(t, tw.WriteHeader(h))
			if h.Size > 0 {
				tw.Write([]byte("x\n"))
			}
		}
		require.NoError(t, tw.Close())
		return &b
	}
	dest := t.TempDir()
	n, err := untar(archive("/", "a", "sub/", "sub/b"), dest, 0)
	require.NoError(t, err)
	assert.Equal(t, 2, n)
	got, err := os.ReadFile(filepath.Join(dest, "sub", "b"))
	require.NoError(t, err)
	assert.Equal(t, "x\n", string(got))

	_, err = untar(archive("/", "/etc/passwd"), t.TempDir(), 0)
	assert.ErrorContains(t, err, "outside")
}

// entry is one entry of a test archive: a file with content, a folder
// (name ending in "/") or a link (target set).
type entry struct{ name, target, content string }

func tarOf(t *testing.T, entries ...entry) *bytes.Buffer {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Mode: 0o644, Typeflag: tar.TypeReg, Size: int64(len(e.content))}
		switch {
		case e.target != "":
			h.Typeflag, h.Linkname, h.Size = tar.TypeSymlink, e.target, 0
		case e.name[len(e.name)-1] == '/':
			h.Typeflag, h.Mode = tar.TypeDir, 0o755
		}
		require.NoError(t, tw.WriteHeader(h))
		tw.Write([]byte(e.content))
	}
	require.NoError(t, tw.Close())
	return &b
}

// TestUntar_Links: a link whose target resolves outside the destination
// is refused, through chains of relative links too; links that stay
// inside are kept.
func TestUntar_Links(t *testing.T) {
	for name, tc := range map[string]struct {
		entries []entry
		bad     string
	}{
		"Inside":       {entries: []entry{{name: "lib/a.so", content: "x"}, {name: "bin/a.so", target: "../lib/a.so"}}},
		"Up":           {entries: []entry{{name: "x", target: "../outside"}}, bad: `"x" -> "../outside"`},
		"Absolute":     {entries: []entry{{name: "x", target: "/etc"}}, bad: `"x" -> "/etc"`},
		"ChainDot":     {entries: []entry{{name: "a", target: "."}, {name: "b", target: "a/.."}}, bad: `"b" -> "a/.."`},
		"ChainSub":     {entries: []entry{{name: "d/", content: ""}, {name: "d/up", target: ".."}, {name: "e", target: "d/up/.."}}, bad: `"e" -> "d/up/.."`},
		"ChainThrough": {entries: []entry{{name: "s/", content: ""}, {name: "s/l", target: "."}, {name: "t", target: "s/l/l/l/../.."}}, bad: `"t" -> "s/l/l/l/../.."`},
	} {
		t.Run(name, func(t *testing.T) {
			dest := filepath.Join(t.TempDir(), "dest")
			_, err := untar(tarOf(t, tc.entries...), dest, 0)
			if tc.bad == "" {
				require.NoError(t, err)
				got, err := os.ReadFile(filepath.Join(dest, "bin", "a.so"))
				require.NoError(t, err)
				assert.Equal(t, "x", string(got))
				return
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), "archive link "+tc.bad+" points outside")
		})
	}
}

// TestUntar_MaxSize: the limit is on the bytes written, whatever the
// archive's own size: a small gzip that unpacks to a lot is stopped.
func TestUntar_MaxSize(t *testing.T) {
	dest := t.TempDir()
	_, err := untar(tarOf(t, entry{name: "a", content: strings.Repeat("x", 600)}, entry{name: "b", content: strings.Repeat("y", 600)}), dest, 1000)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "the archive unpacks to more than 1000 bytes (MaxSize)")
	_, err = os.Stat(filepath.Join(dest, "b"))
	assert.ErrorIs(t, err, os.ErrNotExist, "the file that went past the limit is removed")

	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	_, err = io.Copy(zw, tarOf(t, entry{name: "big", content: strings.Repeat("\x00", 8<<20)}))
	require.NoError(t, err)
	require.NoError(t, zw.Close())
	require.Less(t, gz.Len(), 64<<10, "a small archive")
	zr, err := gzip.NewReader(&gz)
	require.NoError(t, err)
	_, err = untar(zr, t.TempDir(), 1<<20)
	assert.ErrorContains(t, err, "unpacks to more than 1048576 bytes")
}
