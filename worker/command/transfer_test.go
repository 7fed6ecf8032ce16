//go:build unix

package command_test

import (
	"archive/tar"
	"bytes"
	"compress/bzip2"
	"compress/gzip"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kilnci/kiln/worker/command"
)

func uploadArgs(path string, blocksize int, maxsize any) map[string]any {
	return map[string]any{
		"workdir": "build", "workersrc": "x", // kept by the master, unused
		"path": path, "blocksize": blocksize, "maxsize": maxsize, "keepstamp": false,
	}
}

// data returns the concatenated data of the calls named op.
func (h *fakeHost) data(op string) (string, []string) {
	var all strings.Builder
	var blocks []string
	for _, c := range h.Calls() {
		if c.Op == op {
			all.WriteString(c.Data)
			blocks = append(blocks, c.Data)
		}
	}
	return all.String(), blocks
}

// transferOps returns the calls' names, the updates replaced by their keys.
func (h *fakeHost) transferOps() []string {
	var ops []string
	for _, c := range h.Calls() {
		if c.Op != "update" {
			ops = append(ops, c.Op)
			continue
		}
		for _, u := range c.Updates {
			ops = append(ops, u.Key)
		}
	}
	return ops
}

func TestUploadFile(t *testing.T) {
	opts := testOptions(t)
	p := filepath.Join(opts.BaseDir, "build", "x")
	require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
	require.NoError(t, os.WriteFile(p, []byte("0123456789"), 0o644))
	stamp := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)

	t.Run("OK", func(t *testing.T) {
		h := &fakeHost{}
		runCmd(t, t.Context(), h, "upload_file", uploadArgs(p, 4, nil), opts)
		all, blocks := h.data("write")
		assert.Equal(t, "0123456789", all)
		assert.Equal(t, []string{"0123", "4567", "89"}, blocks)
		assert.Equal(t, []string{"header", "write", "write", "write", "close", "rc", "elapsed"}, h.transferOps())
		assert.Equal(t, []kv{{"header", "sending " + p + "\n"}, {"rc", 0}, {"elapsed", 0.0}}, h.Updates(t))
	})
	t.Run("keepstamp", func(t *testing.T) {
		require.NoError(t, os.Chtimes(p, stamp.Add(time.Hour), stamp))
		h := &fakeHost{}
		args := uploadArgs(p, 1024, nil)
		args["keepstamp"] = true
		runCmd(t, t.Context(), h, "upload_file", args, opts)
		assert.Equal(t, []string{"header", "write", "close", "utime", "rc", "elapsed"}, h.transferOps())
		for _, c := range h.Calls() {
			if c.Op == "utime" {
				assert.True(t, stamp.Equal(c.Modified), "modified %v", c.Modified)
				assert.True(t, stamp.Add(time.Hour).Equal(c.Access), "access %v", c.Access)
			}
		}
	})
	t.Run("maxsize", func(t *testing.T) {
		h := &fakeHost{}
		runCmd(t, t.Context(), h, "upload_file", uploadArgs(p, 4, 6), opts)
		all, _ := h.data("write")
		assert.Equal(t, "012345", all)
		assert.Equal(t, []kv{
			{"header", "sending " + p + "\n"},
			{"rc", 1},
			{"elapsed", 0.0},
			{"stderr", "Maximum filesize reached, truncating file '" + p + "'\n"},
		}, h.Updates(t))
	})
	t.Run("exactly maxsize", func(t *testing.T) {
		h := &fakeHost{}
		runCmd(t, t.Context(), h, "upload_file", uploadArgs(p, 4, 10), opts)
		all, _ := h.data("write")
		assert.Equal(t, "0123456789", all)
		assert.Equal(t, 0, h.Value("rc"))
	})
	t.Run("missing", func(t *testing.T) {
		h := &fakeHost{}
		missing := filepath.Join(opts.BaseDir, "nothing")
		runCmd(t, t.Context(), h, "upload_file", uploadArgs(missing, 4, nil), opts)
		assert.Equal(t, []string{"header", "close", "rc", "elapsed", "stderr"}, h.transferOps())
		assert.Equal(t, "Cannot open file '"+missing+"' for upload\n", h.Text("stderr"))
		assert.Equal(t, 1, h.Value("rc"))
	})
	t.Run("folder", func(t *testing.T) {
		h := &fakeHost{}
		runCmd(t, t.Context(), h, "upload_file", uploadArgs(opts.BaseDir, 4, nil), opts)
		assert.Equal(t, "Cannot open file '"+opts.BaseDir+"' for upload\n", h.Text("stderr"))
	})
	t.Run("master refuses", func(t *testing.T) {
		h := &fakeHost{FailOn: "write"}
		err := command.Run(t.Context(), h, "upload_file", uploadArgs(p, 4, nil), opts)
		require.ErrorIs(t, err, errRefused)
		assert.Equal(t, []string{"header", "write", "close", "rc", "elapsed"}, h.transferOps())
		assert.Equal(t, 1, h.Value("rc"))
	})
	t.Run("interrupted", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		h := &fakeHost{}
		h.OnUpdate = func(u command.Update) {
			if u.Key == "header" {
				cancel()
			}
		}
		runCmd(t, ctx, h, "upload_file", uploadArgs(p, 4, nil), opts)
		// No block sent; rc 1 still is (buildbot-worker sends it past
		// the interrupt), "elapsed" is not.
		assert.Equal(t, []string{"header", "close", "rc"}, h.transferOps())
		assert.Equal(t, 1, h.Value("rc"))
	})
}

func TestTransfer_Confined(t *testing.T) {
	opts := testOptions(t)
	outside := t.TempDir()
	writeFiles(t, outside, "secret")
	require.NoError(t, os.Symlink(filepath.Join(outside, "secret"), filepath.Join(opts.BaseDir, "file-link")))
	require.NoError(t, os.Symlink(outside, filepath.Join(opts.BaseDir, "dir-link")))
	require.NoError(t, os.Symlink(filepath.Join(outside, "new"), filepath.Join(opts.BaseDir, "dangling")))
	require.NoError(t, os.Symlink("../../..", filepath.Join(opts.BaseDir, "up")))
	tests := []struct {
		name    string
		command string
		path    string
	}{
		{"upload ../", "upload_file", opts.BaseDir + "/../" + filepath.Base(outside) + "/secret"},
		{"upload file link", "upload_file", opts.BaseDir + "/file-link"},
		{"upload dir link", "upload_file", opts.BaseDir + "/dir-link/secret"},
		{"upload relative link", "upload_file", opts.BaseDir + "/up/etc/passwd"},
		{"upload absolute", "upload_file", "/etc/passwd"},
		{"upload_directory link", "upload_directory", opts.BaseDir + "/dir-link"},
		{"download ../", "download_file", opts.BaseDir + "/../" + filepath.Base(outside) + "/new"},
		{"download dir link", "download_file", opts.BaseDir + "/dir-link/new"},
		{"download dangling link", "download_file", opts.BaseDir + "/dangling"},
		{"download file link", "download_file", opts.BaseDir + "/file-link"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := &fakeHost{Download: strings.NewReader("pwned")}
			args := uploadArgs(tt.path, 4, nil)
			args["mode"] = nil
			args["compress"] = nil
			err := command.Run(t.Context(), h, tt.command, args, opts)
			require.ErrorIs(t, err, command.ErrOutsideBase)
			assert.Contains(t, err.Error(), "outside the worker's base folder "+`"`+opts.BaseDir+`"`)
			assert.Equal(t, []string{"elapsed"}, h.transferOps(), "nothing but elapsed, as for any failure")
			assert.NoFileExists(t, filepath.Join(outside, "new"))
			b, err := os.ReadFile(filepath.Join(outside, "secret"))
			require.NoError(t, err)
			assert.Equal(t, "content of secret", string(b))
		})
	}
	t.Run("unconfined", func(t *testing.T) {
		o := *opts
		o.Unconfined = true
		h := &fakeHost{}
		runCmd(t, t.Context(), h, "upload_file", uploadArgs(opts.BaseDir+"/file-link", 1024, nil), &o)
		all, _ := h.data("write")
		assert.Equal(t, "content of secret", all)
	})
	t.Run("link inside", func(t *testing.T) {
		writeFiles(t, opts.BaseDir, "real/f")
		require.NoError(t, os.Symlink(filepath.Join(opts.BaseDir, "real"), filepath.Join(opts.BaseDir, "abs-link")))
		h := &fakeHost{}
		runCmd(t, t.Context(), h, "upload_file", uploadArgs(opts.BaseDir+"/abs-link/f", 1024, nil), opts)
		all, _ := h.data("write")
		assert.Equal(t, "content of real/f", all)
	})
}

// tarEntry is what a test checks of an archive member.
type tarEntry struct {
	Name     string
	Type     byte
	Linkname string
	Content  string
}

func readTar(t *testing.T, r io.Reader) []tarEntry {
	t.Helper()
	var out []tarEntry
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return out
		}
		require.NoError(t, err)
		b, err := io.ReadAll(tr)
		require.NoError(t, err)
		out = append(out, tarEntry{hdr.Name, hdr.Typeflag, hdr.Linkname, string(b)})
	}
}

func TestUploadDirectory(t *testing.T) {
	opts := testOptions(t)
	dir := filepath.Join(opts.BaseDir, "build", "docs")
	writeFiles(t, dir, "f", "sub/g", "empty/")
	require.NoError(t, os.Symlink("sub/g", filepath.Join(dir, "link")))
	require.NoError(t, os.Link(filepath.Join(dir, "f"), filepath.Join(dir, "hard")))
	want := []tarEntry{
		{"", tar.TypeDir, "", ""},
		{"empty", tar.TypeDir, "", ""},
		{"f", tar.TypeReg, "", "content of f"},
		{"hard", tar.TypeLink, "f", ""},
		{"link", tar.TypeSymlink, "sub/g", ""},
		{"sub", tar.TypeDir, "", ""},
		{"sub/g", tar.TypeReg, "", "content of sub/g"},
	}
	bzip2Program, bzip2Err := exec.LookPath("bzip2")
	tests := []struct {
		compress any
		open     func(io.Reader) io.Reader
	}{
		{nil, func(r io.Reader) io.Reader { return r }},
		{"gz", func(r io.Reader) io.Reader {
			zr, err := gzip.NewReader(r)
			require.NoError(t, err)
			return zr
		}},
		{"bz2", func(r io.Reader) io.Reader { return bzip2.NewReader(r) }},
	}
	for _, tt := range tests {
		t.Run(pyName(tt.compress), func(t *testing.T) {
			if tt.compress == "bz2" && bzip2Err != nil {
				t.Skip("no bzip2 program:", bzip2Err)
			}
			h := &fakeHost{}
			args := uploadArgs(dir, 512, nil)
			args["compress"] = tt.compress
			runCmd(t, t.Context(), h, "upload_directory", args, opts)
			data, blocks := h.data("dirwrite")
			for _, b := range blocks[:len(blocks)-1] {
				assert.Len(t, b, 512)
			}
			assert.Equal(t, want, readTar(t, tt.open(strings.NewReader(data))))
			ops := h.transferOps()
			assert.Equal(t, "header", ops[0])
			assert.Equal(t, []string{"unpack", "rc", "elapsed"}, ops[len(ops)-3:])
			assert.Equal(t, []kv{{"header", "sending " + dir + "\n"}, {"rc", 0}, {"elapsed", 0.0}}, h.Updates(t))
		})
	}
	_ = bzip2Program

	t.Run("maxsize", func(t *testing.T) {
		h := &fakeHost{}
		runCmd(t, t.Context(), h, "upload_directory", uploadArgs(dir, 512, 1000), opts)
		data, _ := h.data("dirwrite")
		assert.Len(t, data, 1000)
		assert.Equal(t, []kv{
			{"header", "sending " + dir + "\n"},
			{"rc", 1},
			{"elapsed", 0.0},
			{"stderr", "Maximum filesize reached, truncating file '" + dir + "'\n"},
		}, h.Updates(t))
		assert.Contains(t, h.Ops(), "unpack", "the master still unpacks, as with buildbot-worker")
	})
	t.Run("missing", func(t *testing.T) {
		h := &fakeHost{}
		err := command.Run(t.Context(), h, "upload_directory", uploadArgs(filepath.Join(opts.BaseDir, "nothing"), 512, nil), opts)
		require.ErrorContains(t, err, "no such file or directory")
		assert.Equal(t, []string{"elapsed"}, h.transferOps())
	})
	t.Run("no bzip2 program", func(t *testing.T) {
		t.Setenv("PATH", t.TempDir())
		h := &fakeHost{}
		args := uploadArgs(dir, 512, nil)
		args["compress"] = "bz2"
		err := command.Run(t.Context(), h, "upload_directory", args, opts)
		require.ErrorContains(t, err, "upload_directory: bz2 compression needs the bzip2 program")
	})
	t.Run("master refuses unpack", func(t *testing.T) {
		h := &fakeHost{FailOn: "unpack"}
		err := command.Run(t.Context(), h, "upload_directory", uploadArgs(dir, 1<<16, nil), opts)
		require.ErrorIs(t, err, errRefused)
		assert.Equal(t, 1, h.Value("rc"))
	})
}

func pyName(v any) string {
	if v == nil {
		return "None"
	}
	return v.(string)
}

func downloadArgs(path string, blocksize int, maxsize, mode any) map[string]any {
	return map[string]any{
		"workdir": "build", "workerdest": "x",
		"path": path, "blocksize": blocksize, "maxsize": maxsize, "mode": mode,
	}
}

func TestDownloadFile(t *testing.T) {
	opts := testOptions(t)
	t.Run("OK", func(t *testing.T) {
		p := filepath.Join(opts.BaseDir, "build", "new", "dir", "f")
		h := &fakeHost{Download: strings.NewReader("0123456789")}
		runCmd(t, t.Context(), h, "download_file", downloadArgs(p, 4, nil, int64(0o750)), opts)
		assert.Equal(t, []string{"read", "read", "read", "read", "readclose", "rc", "elapsed"}, h.transferOps())
		assert.Equal(t, []kv{{"rc", 0}, {"elapsed", 0.0}}, h.Updates(t))
		b, err := os.ReadFile(p)
		require.NoError(t, err)
		assert.Equal(t, "0123456789", string(b))
		fi, err := os.Stat(p)
		require.NoError(t, err)
		assert.Equal(t, os.FileMode(0o750), fi.Mode())
	})
	t.Run("replaces", func(t *testing.T) {
		p := filepath.Join(opts.BaseDir, "old")
		require.NoError(t, os.WriteFile(p, []byte("a much longer old content"), 0o600))
		h := &fakeHost{Download: strings.NewReader("new")}
		runCmd(t, t.Context(), h, "download_file", downloadArgs(p, 16, nil, nil), opts)
		b, err := os.ReadFile(p)
		require.NoError(t, err)
		assert.Equal(t, "new", string(b))
	})
	t.Run("maxsize", func(t *testing.T) {
		p := filepath.Join(opts.BaseDir, "max")
		h := &fakeHost{Download: strings.NewReader("0123456789")}
		runCmd(t, t.Context(), h, "download_file", downloadArgs(p, 4, 6, nil), opts)
		var lengths []int
		for _, c := range h.Calls() {
			if c.Op == "read" {
				lengths = append(lengths, c.Length)
			}
		}
		assert.Equal(t, []int{4, 2}, lengths)
		assert.Equal(t, []kv{{"rc", 1}, {"elapsed", 0.0}, {"stderr", "Maximum filesize reached, truncating file '" + p + "'\n"}}, h.Updates(t))
		b, err := os.ReadFile(p)
		require.NoError(t, err)
		assert.Equal(t, "012345", string(b))
	})
	t.Run("cannot open", func(t *testing.T) {
		h := &fakeHost{Download: strings.NewReader("x")}
		runCmd(t, t.Context(), h, "download_file", downloadArgs(opts.BaseDir, 4, nil, nil), opts)
		assert.Equal(t, []string{"readclose", "rc", "elapsed", "stderr"}, h.transferOps())
		assert.Equal(t, "Cannot open file '"+opts.BaseDir+"' for download\n", h.Text("stderr"))
	})
	t.Run("master refuses", func(t *testing.T) {
		h := &fakeHost{Download: strings.NewReader("x"), FailOn: "read"}
		err := command.Run(t.Context(), h, "download_file", downloadArgs(filepath.Join(opts.BaseDir, "r"), 4, nil, nil), opts)
		require.ErrorIs(t, err, errRefused)
		assert.Equal(t, []string{"read", "readclose", "rc", "elapsed"}, h.transferOps())
	})
	t.Run("too much data", func(t *testing.T) {
		h := &tooMuchHost{}
		err := command.Run(t.Context(), h, "download_file", downloadArgs(filepath.Join(opts.BaseDir, "t"), 4, nil, nil), opts)
		require.ErrorContains(t, err, "the master sent 5 bytes where 4 were asked for")
	})
}

type tooMuchHost struct{ fakeHost }

func (h *tooMuchHost) ReadFile(ctx context.Context, length int) ([]byte, error) {
	return bytes.Repeat([]byte("x"), length+1), nil
}
