package steps

import (
	"archive/tar"
	"bytes"
	"os"
	"path/filepath"
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
	n, err := untar(archive("/", "a", "sub/", "sub/b"), dest)
	require.NoError(t, err)
	assert.Equal(t, 2, n)
	got, err := os.ReadFile(filepath.Join(dest, "sub", "b"))
	require.NoError(t, err)
	assert.Equal(t, "x\n", string(got))

	_, err = untar(archive("/", "/etc/passwd"), t.TempDir())
	assert.ErrorContains(t, err, "outside")
}
