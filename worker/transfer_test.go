package worker_test

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kilnci/kiln/worker/protocol"
)

func TestWorker_UploadFile(t *testing.T) {
	m := startMaster(t, "w1", "pass")
	w := newWorker(t, m)
	startWorker(t, w)
	c := m.accept()
	c.handshake()

	src := filepath.Join(w.BaseDir, "b", "build", "out.txt")
	require.NoError(t, os.MkdirAll(filepath.Dir(src), 0o755))
	content := []byte("hello, master\nsecond line\n")
	require.NoError(t, os.WriteFile(src, content, 0o644))
	mtime := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
	require.NoError(t, os.Chtimes(src, mtime, mtime))

	var got bytes.Buffer
	var ops []string
	run := c.runCommand("1", "upload_file", map[string]any{
		"path": src, "blocksize": int64(10), "maxsize": nil, "keepstamp": true,
	}, func(m protocol.Message) (any, error) {
		ops = append(ops, m.Op())
		switch m.Op() {
		case protocol.OpUpdateUploadFileWrite:
			data, ok := m["args"].([]byte)
			require.True(t, ok, "file data is a %T, not binary", m["args"])
			assert.LessOrEqual(t, len(data), 10)
			got.Write(data)
		case protocol.OpUpdateUploadFileUtime:
			assert.Equal(t, float64(mtime.Unix()), m["modified_time"])
			_, ok := m["access_time"].(float64)
			assert.True(t, ok, "access_time is a %T", m["access_time"])
		}
		return nil, nil
	})
	assert.Nil(t, run.complete)
	assert.Equal(t, int64(0), run.rc(t))
	assert.Equal(t, content, got.Bytes())
	n := len(ops)
	require.GreaterOrEqual(t, n, 3)
	assert.Equal(t, []string{protocol.OpUpdateUploadFileClose, protocol.OpUpdateUploadFileUtime}, ops[n-2:])

	// A master that refuses a block fails the command.
	run = c.runCommand("2", "upload_file", map[string]any{
		"path": src, "blocksize": int64(10), "maxsize": nil,
	}, func(m protocol.Message) (any, error) {
		if m.Op() == protocol.OpUpdateUploadFileWrite {
			return nil, errors.New("disk full")
		}
		return nil, nil
	})
	assert.Contains(t, run.complete, "disk full")
}

func TestWorker_UploadDirectory(t *testing.T) {
	m := startMaster(t, "w1", "pass")
	w := newWorker(t, m)
	startWorker(t, w)
	c := m.accept()
	c.handshake()

	dir := filepath.Join(w.BaseDir, "b", "build", "dist")
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "sub"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "a.txt"), []byte("A"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "sub", "b.txt"), []byte("BB"), 0o644))

	var archive bytes.Buffer
	unpacked := false
	run := c.runCommand("1", "upload_directory", map[string]any{
		"path": dir, "blocksize": int64(512), "maxsize": nil, "compress": nil,
	}, func(m protocol.Message) (any, error) {
		switch m.Op() {
		case protocol.OpUpdateUploadDirectoryWrite:
			data, ok := m["args"].([]byte)
			require.True(t, ok, "archive data is a %T", m["args"])
			archive.Write(data)
		case protocol.OpUpdateUploadDirectoryUnpack:
			unpacked = true
		default:
			t.Errorf("unexpected %s", m.Op())
		}
		return nil, nil
	})
	assert.Nil(t, run.complete)
	assert.Equal(t, int64(0), run.rc(t))
	assert.True(t, unpacked)
	files := map[string]string{}
	tr := tar.NewReader(&archive)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		require.NoError(t, err)
		if h.Typeflag == tar.TypeReg {
			b, err := io.ReadAll(tr)
			require.NoError(t, err)
			files[h.Name] = string(b)
		}
	}
	assert.Equal(t, map[string]string{"a.txt": "A", "sub/b.txt": "BB"}, files)
}

func TestWorker_DownloadFile(t *testing.T) {
	m := startMaster(t, "w1", "pass")
	w := newWorker(t, m)
	startWorker(t, w)
	c := m.accept()
	c.handshake()

	content := []byte("downloaded from the master, in blocks\n")
	rest := content
	dest := filepath.Join(w.BaseDir, "b", "build", "sub", "in.txt")
	closed := false
	run := c.runCommand("1", "download_file", map[string]any{
		"path": dest, "blocksize": int64(8), "maxsize": nil, "mode": int64(0o640),
	}, func(m protocol.Message) (any, error) {
		switch m.Op() {
		case protocol.OpUpdateReadFile:
			assert.Equal(t, int64(8), m["length"])
			n := min(8, len(rest))
			block := rest[:n]
			rest = rest[n:]
			return block, nil
		case protocol.OpUpdateReadFileClose:
			closed = true
		default:
			t.Errorf("unexpected %s", m.Op())
		}
		return nil, nil
	})
	assert.Nil(t, run.complete)
	assert.Equal(t, int64(0), run.rc(t))
	assert.True(t, closed)
	got, err := os.ReadFile(dest)
	require.NoError(t, err)
	assert.Equal(t, content, got)
	fi, err := os.Stat(dest)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o640), fi.Mode().Perm())

	// A master that sends more than it was asked for fails the command.
	run = c.runCommand("2", "download_file", map[string]any{
		"path": dest, "blocksize": int64(4), "maxsize": nil, "mode": nil,
	}, func(m protocol.Message) (any, error) {
		if m.Op() == protocol.OpUpdateReadFile {
			return []byte("far too long"), nil
		}
		return nil, nil
	})
	assert.Contains(t, run.complete, "12 bytes")
}
