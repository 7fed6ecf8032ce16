package debtest

import (
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/kilnci/kiln/internal/testenv"
)

// DefaultTarball is where .ci/run leaves the bookworm amd64 buildd chroot
// tarball that mmdebstrap made, for sbuild's unshare mode.
const DefaultTarball = "/var/cache/kiln/bookworm-amd64.tar.zst"

// DefaultUser is the unprivileged user, with subordinate uid and gid
// ranges, that .ci/run creates for sbuild's unshare mode.
const DefaultUser = "kilnbuild"

// Tarball returns the chroot tarball for sbuild (KILN_SBUILD_TARBALL, or
// DefaultTarball). When it is missing the test is skipped, or fails under
// CI.
func Tarball(tb testing.TB) string {
	tb.Helper()
	path := os.Getenv("KILN_SBUILD_TARBALL")
	if path == "" {
		path = DefaultTarball
	}
	if _, err := os.Stat(path); err != nil {
		missing(tb, "the sbuild chroot tarball %s (made by .ci/run with mmdebstrap): %v", path, err)
	}
	return path
}

// BuildUser is the user builds run as.
type BuildUser struct {
	Name     string
	UID, GID uint32
	Groups   []uint32 // every group of the user: sbuild's among them
	Home     string
}

// Credential is what starts a process as the user, with its groups.
func (u BuildUser) Credential() *syscall.Credential {
	return &syscall.Credential{Uid: u.UID, Gid: u.GID, Groups: u.Groups}
}

// Chown gives the user the files and folders under root.
func (u BuildUser) Chown(root string) error {
	return filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(path, int(u.UID), int(u.GID))
	})
}

// User returns the unprivileged build user (KILN_SBUILD_USER, or
// DefaultUser), which must have subordinate uid and gid ranges. The test
// must run as root, to start processes as that user. When any of that is
// missing the test is skipped, or fails under CI.
func User(tb testing.TB) BuildUser {
	tb.Helper()
	name := os.Getenv("KILN_SBUILD_USER")
	if name == "" {
		name = DefaultUser
	}
	if os.Geteuid() != 0 {
		missing(tb, "root, to run builds as the user %s", name)
	}
	u, err := user.Lookup(name)
	if err != nil {
		missing(tb, "the build user %s (created by .ci/run): %v", name, err)
	}
	for _, f := range []string{"/etc/subuid", "/etc/subgid"} {
		b, _ := os.ReadFile(f)
		if !hasRange(string(b), name, u.Uid) {
			missing(tb, "a subordinate range for %s in %s", name, f)
		}
	}
	uid, _ := strconv.ParseUint(u.Uid, 10, 32)
	gid, _ := strconv.ParseUint(u.Gid, 10, 32)
	bu := BuildUser{Name: name, UID: uint32(uid), GID: uint32(gid), Home: u.HomeDir}
	gids, err := u.GroupIds()
	if err != nil {
		tb.Fatalf("groups of %s: %v", name, err)
	}
	for _, g := range gids {
		n, _ := strconv.ParseUint(g, 10, 32)
		bu.Groups = append(bu.Groups, uint32(n))
	}
	return bu
}

// hasRange reports whether an /etc/subuid-style file gives a range to the
// user, by name or by uid.
func hasRange(file, name, uid string) bool {
	for _, line := range strings.Split(file, "\n") {
		owner, _, ok := strings.Cut(line, ":")
		if ok && (owner == name || owner == uid) {
			return true
		}
	}
	return false
}

// NeedTools checks that the Debian tools the tests run are installed.
func NeedTools(tb testing.TB, names ...string) {
	tb.Helper()
	for _, n := range names {
		testenv.NeedTool(tb, n)
	}
}

func missing(tb testing.TB, format string, args ...any) {
	tb.Helper()
	if testenv.CI() {
		tb.Fatalf("required under CI: "+format, args...)
	}
	tb.Skipf("missing "+format, args...)
}

// DefaultSchroot is the schroot chroot .ci/run makes for sbuild's schroot
// mode, as sbuild-createchroot would (from the same tarball), with an
// overlay so that builds leave it unchanged.
const DefaultSchroot = "bookworm-amd64-sbuild"

// Schroot checks that schroot knows the chroot called name. When it does
// not the test is skipped, or fails under CI. It then holds the chroot's
// lock until the test ends: the tests of several packages, run at once
// by go test, use the machine's one chroot, and two upgrades of it at
// once fail (debconf's lock), as would an upgrade beside a build.
func Schroot(tb testing.TB, name string) {
	tb.Helper()
	NeedTools(tb, "schroot")
	out, err := exec.Command("schroot", "--list", "--all-chroots").Output()
	if err != nil || !strings.Contains("\n"+string(out), "\nchroot:"+name+"\n") {
		missing(tb, "the schroot chroot %s (created by .ci/run): %v", name, err)
	}
	lockChroot(tb, name)
}

// lockChroot takes, for the rest of the test, an exclusive lock on a file
// named after the chroot, shared by every test process of the machine.
func lockChroot(tb testing.TB, name string) {
	tb.Helper()
	path := filepath.Join(os.TempDir(), "kiln-test-chroot-"+name+".lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o666)
	if err != nil {
		tb.Fatalf("lock the chroot %s: %v", name, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		tb.Fatalf("lock the chroot %s: %v", name, err)
	}
	tb.Cleanup(func() { f.Close() }) // closing releases the lock
}
