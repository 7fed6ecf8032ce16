//go:build unix

package ci_test

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kilnci/kiln/ci"
	"github.com/kilnci/kiln/ci/citest"
)

// TestMaster_StoreAccess: a base folder whose database the master's user
// may not read or write (a folder of root's files, the master run as
// another user) stops the master with "permission denied" naming the
// file, its owner and mode, instead of SQLite's codes ("attempt to write
// a readonly database (8)", "unable to open database file (14)"). Run as
// root (as CI does), the files are root's and the master runs as the user
// nobody, in the test binary run again; run as another user, the files
// are its own, with modes that deny it the same.
func TestMaster_StoreAccess(t *testing.T) {
	if dir := os.Getenv("KILN_TEST_STORE_DIR"); dir != "" {
		storeAccessRun(t, dir, os.Getenv("KILN_TEST_STORE_WANT"))
		return
	}
	root := os.Geteuid() == 0
	// mode picks root's mode when the master runs as nobody, or the mode
	// that denies the same to the files' owner.
	mode := func(asRoot, asOwner os.FileMode) os.FileMode {
		if root {
			return asRoot
		}
		return asOwner
	}
	uid := os.Geteuid()
	runner := uid
	if root {
		runner = 65534
	}
	for _, tc := range []struct {
		name string
		// prepare changes the folder of a stopped master; it returns what
		// the message must say, naming the file or folder in question.
		prepare func(t *testing.T, dir string) string
	}{
		{"database read-only", func(t *testing.T, dir string) string {
			db := filepath.Join(dir, "state.sqlite")
			m := mode(0o644, 0o444)
			require.NoError(t, os.Chmod(db, m))
			return fmt.Sprintf("open database %s: permission denied (owned by uid %d, mode %04o; this process runs as uid %d, which needs to read and write it)", db, uid, m, runner)
		}},
		{"database unreadable", func(t *testing.T, dir string) string {
			db := filepath.Join(dir, "state.sqlite")
			m := mode(0o600, 0o000)
			require.NoError(t, os.Chmod(db, m))
			return fmt.Sprintf("open database %s: permission denied (owned by uid %d, mode %04o;", db, uid, m)
		}},
		{"wal read-only", func(t *testing.T, dir string) string {
			db := filepath.Join(dir, "state.sqlite")
			wal := db + "-wal"
			m := mode(0o644, 0o444)
			require.NoError(t, os.Chmod(db, 0o666))
			// An empty log is a valid one: SQLite would open the
			// database and fail on its first write.
			require.NoError(t, os.WriteFile(wal, nil, m))
			require.NoError(t, os.Chmod(wal, m))
			return fmt.Sprintf("open database %s: permission denied (owned by uid %d, mode %04o;", wal, uid, m)
		}},
		{"folder read-only", func(t *testing.T, dir string) string {
			db := filepath.Join(dir, "state.sqlite")
			require.NoError(t, os.Chmod(db, 0o666))
			m := mode(0o755, 0o555)
			require.NoError(t, os.Chmod(dir, m))
			return fmt.Sprintf("open database %s: folder %s: permission denied (owned by uid %d, mode %04o; this process runs as uid %d, which needs to write it)", db, dir, uid, m, runner)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			cfg := oneBuilder(shell("hello", "true"))
			cfg.BaseDir = dir
			t.Run("first", func(t *testing.T) { citest.Start(t, cfg) })
			// The folder itself is open to the master's user, and its
			// lock file too: only the database is in question.
			require.NoError(t, os.Chmod(dir, 0o777))
			require.NoError(t, os.Chmod(filepath.Join(dir, ci.LockFile), 0o666))
			want := tc.prepare(t, dir)
			t.Cleanup(func() { os.Chmod(dir, 0o755) })
			if root {
				runAsNobody(t, "TestMaster_StoreAccess", "KILN_TEST_STORE_DIR="+dir, "KILN_TEST_STORE_WANT="+want)
				return
			}
			storeAccessRun(t, dir, want)
		})
	}
}

// storeAccessRun starts a master on dir, which must stop at once with an
// error that says want.
func storeAccessRun(t *testing.T, dir, want string) {
	cfg := oneBuilder(shell("hello", "true"))
	cfg.BaseDir = dir
	m, err := ci.NewMaster(cfg)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = m.Run(ctx)
	require.Error(t, err)
	assert.Contains(t, err.Error(), want)
	assert.ErrorIs(t, err, fs.ErrPermission)
	assert.NotContains(t, err.Error(), "(8)")
	assert.NotContains(t, err.Error(), "(14)")
}
