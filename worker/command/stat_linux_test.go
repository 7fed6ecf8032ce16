package command_test

import (
	"path/filepath"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kilnci/kiln/worker/command"
)

func TestStat(t *testing.T) {
	opts := testOptions(t)
	writeFiles(t, opts.BaseDir, "f")
	p := filepath.Join(opts.BaseDir, "f")
	t.Run("OK", func(t *testing.T) {
		h := &fakeHost{}
		runCmd(t, t.Context(), h, "stat", map[string]any{"path": p}, opts)
		var st syscall.Stat_t
		require.NoError(t, syscall.Stat(p, &st))
		assert.Equal(t, []kv{
			{"stat", []int64{int64(st.Mode), int64(st.Ino), int64(st.Dev), int64(st.Nlink), int64(st.Uid), int64(st.Gid),
				st.Size, int64(st.Atim.Sec), int64(st.Mtim.Sec), int64(st.Ctim.Sec)}},
			{"rc", 0},
			{"elapsed", 0.0},
		}, h.Updates(t))
		assert.Equal(t, int64(syscall.S_IFREG|0o644), h.Value("stat").([]int64)[0])
	})
	t.Run("missing", func(t *testing.T) {
		h := &fakeHost{}
		missing := filepath.Join(opts.BaseDir, "nothing")
		runCmd(t, t.Context(), h, "stat", map[string]any{"path": missing}, opts)
		assert.Equal(t, []kv{
			{"rc", int(syscall.ENOENT)},
			{"elapsed", 0.0},
			{"header", "stat: No such file or directory: " + missing + "\n"},
		}, h.Updates(t))
	})
	t.Run("no path", func(t *testing.T) {
		err := command.Run(t.Context(), &fakeHost{}, "stat", map[string]any{}, opts)
		require.EqualError(t, err, `stat: missing argument "path"`)
	})
}
