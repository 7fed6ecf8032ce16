//go:build unix

package command_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kilnci/kiln/worker/command"
)

// writeFiles creates files (a name ending in "/" is a folder) under dir.
func writeFiles(t *testing.T, dir string, names ...string) {
	t.Helper()
	for _, name := range names {
		p := filepath.Join(dir, name)
		if strings.HasSuffix(name, "/") {
			require.NoError(t, os.MkdirAll(p, 0o755))
			continue
		}
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, []byte("content of "+name), 0o644))
	}
}

func TestMkdir(t *testing.T) {
	t.Run("OK", func(t *testing.T) {
		opts := testOptions(t)
		h := &fakeHost{}
		paths := []any{filepath.Join(opts.BaseDir, "a", "b", "c"), filepath.Join(opts.BaseDir, "d")}
		runCmd(t, t.Context(), h, "mkdir", map[string]any{"paths": paths}, opts)
		assert.Equal(t, []kv{{"rc", 0}, {"elapsed", 0.0}}, h.Updates(t))
		assert.DirExists(t, filepath.Join(opts.BaseDir, "a", "b", "c"))
		assert.DirExists(t, filepath.Join(opts.BaseDir, "d"))
	})
	t.Run("exists", func(t *testing.T) {
		opts := testOptions(t)
		h := &fakeHost{}
		runCmd(t, t.Context(), h, "mkdir", map[string]any{"paths": []string{opts.BaseDir}}, opts)
		assert.Equal(t, []kv{{"rc", 0}, {"elapsed", 0.0}}, h.Updates(t))
	})
	t.Run("file in the way", func(t *testing.T) {
		opts := testOptions(t)
		writeFiles(t, opts.BaseDir, "f")
		h := &fakeHost{}
		p := filepath.Join(opts.BaseDir, "f")
		runCmd(t, t.Context(), h, "mkdir", map[string]any{"paths": []string{p}}, opts)
		// The header has no newline: it gets one, and comes last, when the
		// command completes, as from buildbot-worker.
		assert.Equal(t, []kv{
			{"rc", int(syscall.EEXIST)},
			{"elapsed", 0.0},
			{"header", "mkdir: File exists: " + p + "\n"},
		}, h.Updates(t))
	})
	t.Run("ErrOutsideBase", func(t *testing.T) {
		opts := testOptions(t)
		err := command.Run(t.Context(), &fakeHost{}, "mkdir", map[string]any{"paths": []string{opts.BaseDir + "/../x"}}, opts)
		require.ErrorIs(t, err, command.ErrOutsideBase)
	})
}

func TestRmdir(t *testing.T) {
	t.Run("OK", func(t *testing.T) {
		opts := testOptions(t)
		outside := t.TempDir()
		writeFiles(t, outside, "keep")
		writeFiles(t, opts.BaseDir, "build/a/b/f", "build/c", "other/g")
		require.NoError(t, os.Symlink(outside, filepath.Join(opts.BaseDir, "build", "a", "link")))
		require.NoError(t, os.Chmod(filepath.Join(opts.BaseDir, "build", "a", "b"), 0o500))
		h := &fakeHost{}
		paths := []any{filepath.Join(opts.BaseDir, "build"), filepath.Join(opts.BaseDir, "nothing"), filepath.Join(opts.BaseDir, "other/g")}
		runCmd(t, t.Context(), h, "rmdir", map[string]any{"paths": paths, "timeout": 120}, opts)
		assert.Equal(t, []kv{{"rc", 0}, {"elapsed", 0.0}}, h.Updates(t))
		assert.NoDirExists(t, filepath.Join(opts.BaseDir, "build"))
		assert.NoFileExists(t, filepath.Join(opts.BaseDir, "other", "g"))
		assert.FileExists(t, filepath.Join(outside, "keep"), "a link is removed, not what it points to")
	})
	t.Run("failure", func(t *testing.T) {
		opts := testOptions(t)
		writeFiles(t, opts.BaseDir, "f", "d/")
		h := &fakeHost{}
		bad := filepath.Join(opts.BaseDir, "f", "x")
		paths := []any{bad, filepath.Join(opts.BaseDir, "d")}
		runCmd(t, t.Context(), h, "rmdir", map[string]any{"paths": paths}, opts)
		assert.Equal(t, []kv{
			{"header", "rmdir: Not a directory: " + bad + "\n"},
			{"rc", 1},
			{"elapsed", 0.0},
		}, h.Updates(t))
		assert.NoDirExists(t, filepath.Join(opts.BaseDir, "d"), "it goes on after a failure")
	})
}

func TestCpdir(t *testing.T) {
	setup := func(t *testing.T) (*command.Options, string) {
		opts := testOptions(t)
		src := filepath.Join(opts.BaseDir, "src")
		writeFiles(t, src, "f", "sub/g", "empty/")
		require.NoError(t, os.Symlink("sub/g", filepath.Join(src, "link")))
		require.NoError(t, os.Chmod(filepath.Join(src, "f"), 0o640))
		old := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
		require.NoError(t, os.Chtimes(filepath.Join(src, "f"), old, old))
		require.NoError(t, os.Chtimes(filepath.Join(src, "sub"), old, old))
		return opts, src
	}
	check := func(t *testing.T, src, dst string) {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(dst, "sub", "g"))
		require.NoError(t, err)
		assert.Equal(t, "content of sub/g", string(b))
		assert.DirExists(t, filepath.Join(dst, "empty"))
		fi, err := os.Stat(filepath.Join(dst, "f"))
		require.NoError(t, err)
		assert.Equal(t, os.FileMode(0o640), fi.Mode())
		assert.Equal(t, time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC), fi.ModTime().UTC())
		fi, err = os.Stat(filepath.Join(dst, "sub"))
		require.NoError(t, err)
		assert.Equal(t, time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC), fi.ModTime().UTC(), "folder times kept")
		target, err := os.Readlink(filepath.Join(dst, "link"))
		require.NoError(t, err)
		assert.Equal(t, "sub/g", target)
	}
	t.Run("OK", func(t *testing.T) {
		opts, src := setup(t)
		dst := filepath.Join(opts.BaseDir, "new", "dst")
		h := &fakeHost{}
		runCmd(t, t.Context(), h, "cpdir", map[string]any{"from_path": src, "to_path": dst}, opts)
		assert.Equal(t, []kv{{"rc", 0}, {"elapsed", 0.0}}, h.Updates(t))
		check(t, src, dst)
	})
	t.Run("into existing folder", func(t *testing.T) {
		opts, src := setup(t)
		dst := filepath.Join(opts.BaseDir, "dst")
		require.NoError(t, os.Mkdir(dst, 0o755))
		h := &fakeHost{}
		runCmd(t, t.Context(), h, "cpdir", map[string]any{"from_path": src, "to_path": dst}, opts)
		assert.Equal(t, []kv{{"rc", 0}, {"elapsed", 0.0}}, h.Updates(t))
		check(t, src, filepath.Join(dst, "src"))
	})
	t.Run("missing source", func(t *testing.T) {
		opts := testOptions(t)
		src := filepath.Join(opts.BaseDir, "nothing")
		h := &fakeHost{}
		runCmd(t, t.Context(), h, "cpdir", map[string]any{"from_path": src, "to_path": filepath.Join(opts.BaseDir, "dst")}, opts)
		assert.Equal(t, []kv{
			{"header", "cpdir: No such file or directory: " + src + "\n"},
			{"rc", 1},
			{"elapsed", 0.0},
		}, h.Updates(t))
	})
}

// The expected matches come from Python 3.11's glob.glob(recursive=True)
// on the same tree.
func TestGlob(t *testing.T) {
	opts := testOptions(t)
	base := opts.BaseDir
	writeFiles(t, base, "a.c", "b.c", ".hidden.c", "sub/x.c", "sub/deep/y.c", "sub/.h/z.c", ".hd/w.c", "[x].txt", "x.txt", "ab.txt")
	require.NoError(t, os.Symlink("sub", filepath.Join(base, "linkdir")))
	tests := []struct {
		pattern string
		want    []string
	}{
		{"*.c", []string{"a.c", "b.c"}},
		{".*.c", []string{".hidden.c"}},
		{"**/*.c", []string{"a.c", "b.c", "linkdir/deep/y.c", "linkdir/x.c", "sub/deep/y.c", "sub/x.c"}},
		{"**", []string{"", "[x].txt", "a.c", "ab.txt", "b.c", "linkdir", "linkdir/deep", "linkdir/deep/y.c", "linkdir/x.c", "sub", "sub/deep", "sub/deep/y.c", "sub/x.c", "x.txt"}},
		{"sub/**", []string{"sub/", "sub/deep", "sub/deep/y.c", "sub/x.c"}},
		{"*/", []string{"linkdir/", "sub/"}},
		{"*/*.c", []string{"linkdir/x.c", "sub/x.c"}},
		{"[ab].c", []string{"a.c", "b.c"}},
		{"[!a].c", []string{"b.c"}},
		{"[x].txt", []string{"x.txt"}},
		{"[.txt", []string{}},
		{"a?.txt", []string{"ab.txt"}},
		{"nomatch*", []string{}},
		{"sub/x.c", []string{"sub/x.c"}},
		{"sub/nope.c", []string{}},
		{"sub/", []string{"sub/"}},
		{"*/deep/*", []string{"linkdir/deep/y.c", "sub/deep/y.c"}},
	}
	for _, tt := range tests {
		t.Run(tt.pattern, func(t *testing.T) {
			h := &fakeHost{}
			runCmd(t, t.Context(), h, "glob", map[string]any{"path": base + "/" + tt.pattern}, opts)
			files, ok := h.Value("files").([]string)
			require.True(t, ok)
			got := []string{}
			for _, f := range files {
				got = append(got, strings.TrimPrefix(f, base+"/"))
			}
			slices.Sort(got)
			assert.Equal(t, tt.want, got)
			assert.Equal(t, 0, h.Value("rc"))
		})
	}
}

func TestListdir(t *testing.T) {
	opts := testOptions(t)
	writeFiles(t, opts.BaseDir, "b", "a", "c/", ".h")
	t.Run("OK", func(t *testing.T) {
		h := &fakeHost{}
		runCmd(t, t.Context(), h, "listdir", map[string]any{"path": opts.BaseDir}, opts)
		assert.Equal(t, []kv{{"files", []string{".h", "a", "b", "c"}}, {"rc", 0}, {"elapsed", 0.0}}, h.Updates(t))
	})
	t.Run("missing", func(t *testing.T) {
		h := &fakeHost{}
		p := filepath.Join(opts.BaseDir, "nothing")
		runCmd(t, t.Context(), h, "listdir", map[string]any{"path": p}, opts)
		assert.Equal(t, []kv{{"rc", 2}, {"elapsed", 0.0}, {"header", "listdir: No such file or directory: " + p + "\n"}}, h.Updates(t))
	})
	t.Run("file", func(t *testing.T) {
		h := &fakeHost{}
		p := filepath.Join(opts.BaseDir, "a")
		runCmd(t, t.Context(), h, "listdir", map[string]any{"path": p}, opts)
		assert.Equal(t, []kv{{"rc", 20}, {"elapsed", 0.0}, {"header", "listdir: Not a directory: " + p + "\n"}}, h.Updates(t))
	})
}

func TestRmfile(t *testing.T) {
	opts := testOptions(t)
	writeFiles(t, opts.BaseDir, "f", "d/")
	tests := []struct {
		name string
		path string
		want []kv
	}{
		{"OK", "f", []kv{{"rc", 0}, {"elapsed", 0.0}}},
		{"missing", "nothing", []kv{{"rc", 2}, {"elapsed", 0.0}, {"header", "rmfile: No such file or directory: " + opts.BaseDir + "/nothing\n"}}},
		{"folder", "d", []kv{{"rc", 21}, {"elapsed", 0.0}, {"header", "rmfile: Is a directory: " + opts.BaseDir + "/d\n"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := &fakeHost{}
			runCmd(t, t.Context(), h, "rmfile", map[string]any{"path": filepath.Join(opts.BaseDir, tt.path)}, opts)
			assert.Equal(t, tt.want, h.Updates(t))
		})
	}
	assert.NoFileExists(t, filepath.Join(opts.BaseDir, "f"))
	assert.DirExists(t, filepath.Join(opts.BaseDir, "d"))
}

func TestRun_Errors(t *testing.T) {
	opts := testOptions(t)
	tests := []struct {
		name    string
		command string
		args    map[string]any
		is      error
		want    string
	}{
		{"unknown", "frobnicate", nil, command.ErrUnknownCommand, "unrecognized WorkerCommand 'frobnicate'"},
		{"missing shell args", "shell", map[string]any{}, command.ErrMissingArgs, "shell: missing args: workdir, command"},
		{"missing upload args", "upload_file", map[string]any{"path": "x"}, command.ErrMissingArgs, "upload_file: missing args: blocksize"},
		{"missing mkdir args", "mkdir", map[string]any{"dir": "x"}, command.ErrMissingArgs, "mkdir: missing args: paths"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := &fakeHost{}
			err := command.Run(t.Context(), h, tt.command, tt.args, opts)
			require.ErrorIs(t, err, tt.is)
			assert.EqualError(t, err, tt.want)
			assert.Empty(t, h.Calls(), "nothing sent")
		})
	}
}

func TestRun_Cancelled(t *testing.T) {
	opts := testOptions(t)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	h := &fakeHost{}
	err := command.Run(ctx, h, "shell", shellArgs(opts, []any{"true"}), opts)
	require.ErrorIs(t, err, context.Canceled)
	assert.Empty(t, h.Calls())
}

func TestKnown(t *testing.T) {
	assert.True(t, command.Known("shell"))
	assert.True(t, command.Known("uploadFile"))
	assert.True(t, command.Known("download_file"))
	assert.False(t, command.Known("frobnicate"))
}
