package steps_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kilnci/kiln/ci"
	"github.com/kilnci/kiln/ci/citest"
	"github.com/kilnci/kiln/ci/steps"
	"github.com/kilnci/kiln/internal/testenv"
	"github.com/kilnci/kiln/worker/local"
)

func TestFileUpload(t *testing.T) {
	t.Run("OK", func(t *testing.T) {
		stamp := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
		m := start(t,
			&steps.ShellCommand{StepOptions: opts("make"), Command: []string{"sh", "-c", "mkdir -p out && head -c 300000 /dev/urandom > out/pkg.deb && touch -d 2020-01-02T03:04:05Z out/pkg.deb"}},
			&steps.FileUpload{StepOptions: opts("upload"), WorkerSrc: "out/pkg.deb", MasterDest: ci.Interpolate("public/%(prop:arch)s/pkg.deb"), Mode: 0o640, KeepStamp: true, URL: "http://example.org/pkg.deb", BlockSize: 4096},
		)
		b := m.Build(t, citest.Request{Builder: "b"})
		require.Equal(t, ci.Success, b.Results(), b.LogLines("upload", "stdio"))
		want, err := os.ReadFile(filepath.Join(workdir(m), "out", "pkg.deb"))
		require.NoError(t, err)
		dest := filepath.Join(m.Dir, "public", "amd64", "pkg.deb")
		got, err := os.ReadFile(dest)
		require.NoError(t, err)
		assert.Equal(t, want, got)
		fi, err := os.Stat(dest)
		require.NoError(t, err)
		assert.Equal(t, os.FileMode(0o640), fi.Mode().Perm())
		assert.True(t, fi.ModTime().Equal(stamp), "kept stamp: %v", fi.ModTime())
		assert.Equal(t, []ci.StepURL{{Name: "pkg.deb", URL: "http://example.org/pkg.deb"}}, b.Step("upload").URLs)
		leftovers, _ := filepath.Glob(filepath.Join(m.Dir, "public", "amd64", ".*part"))
		assert.Empty(t, leftovers)
	})
	t.Run("MissingFile", func(t *testing.T) {
		m := start(t, &steps.FileUpload{StepOptions: opts("upload"), WorkerSrc: "nope.txt", MasterDest: "x.txt"})
		b := m.Build(t, citest.Request{Builder: "b"})
		assert.Equal(t, ci.Failure, b.Results())
		assert.Contains(t, b.LogLines("upload", "stdio"), "nope.txt")
		assert.NoFileExists(t, filepath.Join(m.Dir, "x.txt"))
		leftovers, _ := filepath.Glob(filepath.Join(m.Dir, ".x.txt*"))
		assert.Empty(t, leftovers, "no partial file is left")
	})
	t.Run("MaxSize", func(t *testing.T) {
		m := start(t,
			&steps.ShellCommand{StepOptions: opts("make"), Command: []string{"sh", "-c", "head -c 10000 /dev/zero > big"}},
			&steps.FileUpload{StepOptions: opts("upload"), WorkerSrc: "big", MasterDest: "big", MaxSize: 1000},
		)
		b := m.Build(t, citest.Request{Builder: "b"})
		assert.Equal(t, ci.Failure, b.Step("upload").Results)
		assert.Contains(t, b.LogLines("upload", "stdio"), "Maximum filesize reached")
	})
	t.Run("PropertyCannotEscape", func(t *testing.T) {
		m := start(t,
			&steps.ShellCommand{StepOptions: opts("make"), Command: []string{"sh", "-c", "echo x > f"}},
			&steps.FileUpload{StepOptions: opts("upload"), WorkerSrc: "f", MasterDest: ci.Interpolate("public/%(prop:branch)s.txt")},
		)
		b := m.Build(t, citest.Request{Builder: "b", Properties: map[string]any{"branch": "../../../etc/kiln-escape"}})
		assert.Equal(t, ci.Exception, b.Step("upload").Results)
		assert.Contains(t, b.Log("upload", "err.text"), `may not contain ".."`)
		assert.NoFileExists(t, filepath.Join(m.Dir, "..", "..", "etc", "kiln-escape.txt"))
	})
}

func TestFileDownload(t *testing.T) {
	m := start(t,
		&steps.FileDownload{StepOptions: opts("download"), MasterSrc: "files/tool.sh", WorkerDest: "bin/tool.sh", Mode: 0o755},
		&steps.ShellCommand{StepOptions: opts("run"), Command: []string{"./bin/tool.sh"}},
		&steps.FileDownload{StepOptions: opts("missing"), MasterSrc: "files/none", WorkerDest: "none"},
	)
	require.NoError(t, os.MkdirAll(filepath.Join(m.Dir, "files"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(m.Dir, "files", "tool.sh"), []byte("#!/bin/sh\necho tool ran\n"), 0o644))
	b := m.Build(t, citest.Request{Builder: "b"})
	assert.Equal(t, ci.Success, b.Step("download").Results, b.LogLines("download", "stdio"))
	assert.Equal(t, "tool ran\n", b.Log("run", "stdio"))
	fi, err := os.Stat(filepath.Join(workdir(m), "bin", "tool.sh"))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o755), fi.Mode().Perm())
	assert.Equal(t, ci.Failure, b.Step("missing").Results)
	assert.Contains(t, b.Header("missing", "stdio"), "cannot read")
}

func TestDirectoryUpload(t *testing.T) {
	for _, compress := range []string{"", "gz", "bz2"} {
		t.Run("compress="+compress, func(t *testing.T) {
			if compress == "bz2" {
				testenv.NeedTool(t, "bzip2")
			}
			m := start(t,
				&steps.ShellCommand{StepOptions: opts("make"), Command: []string{"sh", "-c", "mkdir -p site/css && echo '<h1>hi</h1>' > site/index.html && echo 'body{}' > site/css/a.css && ln -s index.html site/home.html"}},
				&steps.DirectoryUpload{StepOptions: opts("upload"), WorkerSrc: "site", MasterDest: "public/site", Compress: compress},
			)
			b := m.Build(t, citest.Request{Builder: "b"})
			require.Equal(t, ci.Success, b.Results(), b.LogLines("upload", "stdio"))
			dest := filepath.Join(m.Dir, "public", "site")
			index, err := os.ReadFile(filepath.Join(dest, "index.html"))
			require.NoError(t, err)
			assert.Equal(t, "<h1>hi</h1>\n", string(index))
			css, err := os.ReadFile(filepath.Join(dest, "css", "a.css"))
			require.NoError(t, err)
			assert.Equal(t, "body{}\n", string(css))
			link, err := os.Readlink(filepath.Join(dest, "home.html"))
			require.NoError(t, err)
			assert.Equal(t, "index.html", link)
			assert.Contains(t, b.Header("upload", "stdio"), "unpacked 2 files into "+dest)
		})
	}
}

func TestMasterShellCommand(t *testing.T) {
	m := start(t,
		&steps.MasterShellCommand{StepOptions: opts("publish"), Command: ci.Interpolate("mkdir -p pub && echo %(prop:tag)s > pub/latest && cat pub/latest"), Env: map[string]any{"X": "y"}},
		&steps.MasterShellCommand{StepOptions: opts("fails"), Command: []string{"sh", "-c", "echo oops >&2; exit 4"}, Workdir: "pub"},
	)
	b := m.Build(t, citest.Request{Builder: "b", Properties: map[string]any{"tag": "v1; touch hacked"}})
	assert.Equal(t, ci.Success, b.Step("publish").Results, b.LogLines("publish", "stdio"))
	assert.Equal(t, "v1; touch hacked\n", b.Log("publish", "stdio"))
	latest, err := os.ReadFile(filepath.Join(m.Dir, "pub", "latest"))
	require.NoError(t, err)
	assert.Equal(t, "v1; touch hacked\n", string(latest))
	assert.NoFileExists(t, filepath.Join(m.Dir, "hacked"))
	assert.Equal(t, ci.Failure, b.Step("fails").Results)
	assert.Equal(t, "oops\n", citest.Output(b.LogLines("fails", "stdio"), "e"))
	assert.Contains(t, b.Header("fails", "stdio"), "exit code 4")
}

func TestDirectories(t *testing.T) {
	m := start(t,
		&steps.MakeDirectory{StepOptions: opts("mkdir"), Dir: ci.Interpolate("build/out/%(prop:arch)s")},
		&steps.ShellCommand{StepOptions: opts("check"), Command: []string{"test", "-d", "out/amd64"}},
		&steps.RemoveDirectory{StepOptions: opts("rmdir"), Dir: "build/out"},
		&steps.ShellCommand{StepOptions: opts("gone"), Command: []string{"test", "!", "-e", "out"}},
		&steps.RemoveDirectory{StepOptions: opts("again"), Dir: "build/out"},
	)
	b := m.Build(t, citest.Request{Builder: "b"})
	assert.Equal(t, map[string]ci.Result{"mkdir": ci.Success, "check": ci.Success, "rmdir": ci.Success, "gone": ci.Success, "again": ci.Success}, b.StepResults())
}

// lyingConn is a worker that ignores the size limit of uploads: it sends
// 10,000 bytes and says all went well.
type lyingConn struct{ ci.WorkerConn }

func (c lyingConn) RunCommand(ctx context.Context, builder string, cmd *ci.RemoteCommand) error {
	if cmd.Name != "uploadFile" {
		return c.WorkerConn.RunCommand(ctx, builder, cmd)
	}
	cmd.Upload.Write(bytes.Repeat([]byte("x"), 10000))
	cmd.Upload.Close()
	cmd.Update(ci.UpdateRC, 0)
	return nil
}

// TestFileUpload_LyingWorker: past MaxSize the upload fails and nothing
// is kept, whatever the worker says.
func TestFileUpload_LyingWorker(t *testing.T) {
	m := citest.Start(t, ci.MasterConfig{
		Workers:  []ci.WorkerConfig{{Name: "w"}},
		Builders: []ci.BuilderConfig{{Name: "b", Workers: []string{"w"}, Steps: []ci.Step{&steps.FileUpload{StepOptions: opts("upload"), WorkerSrc: "big", MasterDest: "big", MaxSize: 1000}}}},
	}, citest.Options{NoWorkers: true})
	conn, err := local.NewConn("w", filepath.Join(m.Dir, "w"))
	require.NoError(t, err)
	require.NoError(t, m.AttachWorker(t.Context(), lyingConn{conn}))
	b := m.Build(t, citest.Request{Builder: "b"})
	assert.Equal(t, ci.Failure, b.Step("upload").Results)
	assert.Equal(t, "big larger than 1000 bytes (failure)", b.Step("upload").StateString)
	assert.Contains(t, b.Header("upload", "stdio"), "the file is larger than MaxSize (1000 bytes): it is not kept")
	assert.NoFileExists(t, filepath.Join(m.Dir, "big"))
	leftovers, _ := filepath.Glob(filepath.Join(m.Dir, ".big*"))
	assert.Empty(t, leftovers, "no partial file is left")
}
