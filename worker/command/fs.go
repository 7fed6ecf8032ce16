package command

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
)

// The file-system commands report a failure as buildbot-worker does: a
// header "<command>: <strerror>: <path>" and the errno as rc.

// osFailure reports err, from the file-system call made on path, as
// header and rc.
func (r *run) osFailure(path string, err error) {
	errno := errnoOf(err)
	r.log.Debug("command failed", "command", r.name, "path", path, "err", err)
	r.status(
		Update{Key: "header", Value: fmt.Sprintf("%s: %s: %s", r.name, strerror(err), path)},
		Update{Key: "rc", Value: errno},
	)
}

// errnoOf returns the errno err carries, or 1 (EPERM) if it has none.
func errnoOf(err error) int {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return int(errno)
	}
	return 1
}

// strerror returns C's strerror text for err's errno ("No such file or
// directory"), or err itself when it has no errno.
func strerror(err error) string {
	var errno syscall.Errno
	if !errors.As(err, &errno) {
		return err.Error()
	}
	s := errno.Error()
	if s != "" && s[0] >= 'a' && s[0] <= 'z' {
		s = string(s[0]-'a'+'A') + s[1:]
	}
	return s
}

func runMkdir(r *run) error {
	paths, err := r.paths("paths")
	if err != nil {
		return err
	}
	for _, p := range paths {
		if err := makedirs(p); err != nil {
			r.osFailure(p, err)
			return nil
		}
	}
	r.status(Update{Key: "rc", Value: 0})
	return nil
}

// runRmdir removes folders (or files) and everything in them, making
// unreadable folders readable when needed, as "rm -rf" followed by
// "chmod -Rf u+rwx" and a second "rm -rf" do in buildbot-worker. It goes
// on after a failure, and reports rc 1 if any.
func runRmdir(r *run) error {
	paths, err := r.paths("paths")
	if err != nil {
		return err
	}
	rc := 0
	for _, p := range paths {
		if err := removeAll(p); err != nil {
			rc = 1
			r.status(Update{Key: "header", Value: fmt.Sprintf("rmdir: %s: %s\n", strerror(err), p)})
		}
	}
	r.status(Update{Key: "rc", Value: rc})
	return nil
}

func removeAll(path string) error {
	if err := os.RemoveAll(path); err == nil {
		return nil
	}
	// Folders without write or search permission: grant them and try
	// again.
	makeWritable(path)
	return os.RemoveAll(path)
}

// makeWritable gives the owner full permissions on path and the folders
// under it.
func makeWritable(path string) {
	fi, err := os.Lstat(path)
	if err != nil || !fi.IsDir() {
		return
	}
	os.Chmod(path, fi.Mode().Perm()|0o700)
	entries, _ := os.ReadDir(path)
	for _, e := range entries {
		if e.IsDir() {
			makeWritable(filepath.Join(path, e.Name()))
		}
	}
}

// runCpdir copies a folder as "cp -R -P -p from_path to_path" does:
// symbolic links are copied as links, and modes and times (and owners,
// when the worker may set them) are kept. As with cp, a to_path that is
// an existing folder receives a copy of from_path inside it.
func runCpdir(r *run) error {
	from, err := r.path("from_path")
	if err != nil {
		return err
	}
	to, err := r.path("to_path")
	if err != nil {
		return err
	}
	if parent := filepath.Dir(to); !exists(parent) {
		if err := mkdirs(parent); err != nil {
			return fmt.Errorf("cpdir: create %s: %w", parent, err)
		}
	}
	dest := to
	if fi, err := os.Stat(to); err == nil && fi.IsDir() {
		dest = filepath.Join(to, filepath.Base(from))
	}
	if err := copyTree(from, dest); err != nil {
		r.log.Debug("cpdir failed", "from", from, "to", to, "err", err)
		var pe *fs.PathError
		path := from
		if errors.As(err, &pe) {
			path = pe.Path
		}
		r.status(
			Update{Key: "header", Value: fmt.Sprintf("cpdir: %s: %s\n", strerror(err), path)},
			Update{Key: "rc", Value: 1},
		)
		return nil
	}
	r.status(Update{Key: "rc", Value: 0})
	return nil
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// copyTree copies src to dst, which must not exist, recursively.
func copyTree(src, dst string) error {
	fi, err := os.Lstat(src)
	if err != nil {
		return err
	}
	switch mode := fi.Mode(); {
	case mode&fs.ModeSymlink != 0:
		target, err := os.Readlink(src)
		if err != nil {
			return err
		}
		if err := os.Symlink(target, dst); err != nil {
			return err
		}
		if uid, gid, ok := owner(fi); ok {
			os.Lchown(dst, uid, gid) // only root may; cp -p ignores the failure too
		}
		return nil
	case mode.IsDir():
		if err := os.Mkdir(dst, 0o700); err != nil {
			return err
		}
		entries, err := os.ReadDir(src)
		if err != nil {
			return err
		}
		for _, e := range entries {
			if err := copyTree(filepath.Join(src, e.Name()), filepath.Join(dst, e.Name())); err != nil {
				return err
			}
		}
	case mode.IsRegular():
		if err := copyFile(src, dst); err != nil {
			return err
		}
	default:
		return &fs.PathError{Op: "copy", Path: src, Err: errors.New("special files are not copied")}
	}
	return keepAttributes(dst, fi)
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return &fs.PathError{Op: "copy", Path: src, Err: err}
	}
	return out.Close()
}

// keepAttributes gives dst the owner, mode and times of fi.
func keepAttributes(dst string, fi fs.FileInfo) error {
	if uid, gid, ok := owner(fi); ok {
		os.Lchown(dst, uid, gid)
	}
	if err := os.Chmod(dst, fi.Mode()&(fs.ModePerm|fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky)); err != nil {
		return err
	}
	return os.Chtimes(dst, accessTime(fi), fi.ModTime())
}

func runStat(r *run) error {
	p, err := r.path("path")
	if err != nil {
		return err
	}
	fi, err := os.Stat(p)
	if err != nil {
		r.osFailure(p, err)
		return nil
	}
	r.status(Update{Key: "stat", Value: statTuple(fi)}, Update{Key: "rc", Value: 0})
	return nil
}

// genericStatTuple makes Python's os.stat tuple from what fs.FileInfo
// tells on any system.
func genericStatTuple(fi fs.FileInfo) []int64 {
	mode := int64(fi.Mode().Perm())
	switch {
	case fi.IsDir():
		mode |= syscall.S_IFDIR
	case fi.Mode()&fs.ModeSymlink != 0:
		mode |= syscall.S_IFLNK
	default:
		mode |= syscall.S_IFREG
	}
	mtime := fi.ModTime().Unix()
	return []int64{mode, 0, 0, 1, 0, 0, fi.Size(), mtime, mtime, mtime}
}

func runGlob(r *run) error {
	p, err := r.path("path")
	if err != nil {
		return err
	}
	files := pyGlob(p)
	r.status(Update{Key: "files", Value: files}, Update{Key: "rc", Value: 0})
	return nil
}

func runListdir(r *run) error {
	p, err := r.path("path")
	if err != nil {
		return err
	}
	f, err := os.Open(p)
	if err != nil {
		r.osFailure(p, err)
		return nil
	}
	names, err := f.Readdirnames(-1)
	f.Close()
	if err != nil {
		r.osFailure(p, err)
		return nil
	}
	slices.Sort(names)
	r.status(Update{Key: "files", Value: names}, Update{Key: "rc", Value: 0})
	return nil
}

func runRmfile(r *run) error {
	p, err := r.path("path")
	if err != nil {
		return err
	}
	if err := unlink(p); err != nil {
		r.osFailure(p, err)
		return nil
	}
	r.status(Update{Key: "rc", Value: 0})
	return nil
}

// pyGlob is Python's glob.glob(pattern, recursive=True): "*", "?" and
// "[...]" match within a path element, "**" matches any number of
// folders, and names starting with "." match only a pattern that starts
// with "." too. Unlike Python, the names in each folder come sorted.
func pyGlob(pattern string) []string {
	var out []string
	for m := range iglob(pattern, false) {
		out = append(out, m)
	}
	if pattern == "**" && len(out) > 0 && out[0] == "" {
		out = out[1:]
	}
	if out == nil {
		out = []string{}
	}
	return out
}

func hasMagic(s string) bool { return strings.ContainsAny(s, "*?[") }

func isHidden(name string) bool { return name != "" && name[0] == '.' }

// splitPath is Python's posixpath.split.
func splitPath(p string) (string, string) {
	i := strings.LastIndexByte(p, '/') + 1
	head, tail := p[:i], p[i:]
	if head != "" && strings.Trim(head, "/") != "" {
		head = strings.TrimRight(head, "/")
	}
	return head, tail
}

// joinPath is Python's posixpath.join of two elements.
func joinPath(a, b string) string {
	switch {
	case strings.HasPrefix(b, "/"):
		return b
	case a == "" || strings.HasSuffix(a, "/"):
		return a + b
	}
	return a + "/" + b
}

// iglob yields the matches of pattern; dirsOnly keeps folders only.
func iglob(pattern string, dirsOnly bool) func(func(string) bool) {
	return func(yield func(string) bool) {
		dir, base := splitPath(pattern)
		if !hasMagic(pattern) {
			if base != "" {
				if _, err := os.Lstat(pattern); err == nil {
					yield(pattern)
				}
			} else if isDir(dir) {
				yield(pattern)
			}
			return
		}
		if dir == "" {
			for m := range globIn("", base, dirsOnly) {
				if !yield(m) {
					return
				}
			}
			return
		}
		dirs := []string{dir}
		if dir != pattern && hasMagic(dir) {
			dirs = nil
			for d := range iglob(dir, true) {
				dirs = append(dirs, d)
			}
		}
		for _, d := range dirs {
			for name := range globIn(d, base, dirsOnly) {
				if !yield(joinPath(d, name)) {
					return
				}
			}
		}
	}
}

// globIn yields the names in dir matching the last element of a pattern.
func globIn(dir, pattern string, dirsOnly bool) func(func(string) bool) {
	return func(yield func(string) bool) {
		switch {
		case pattern == "**":
			if !yield("") {
				return
			}
			for name := range walkNames(dir, dirsOnly) {
				if !yield(name) {
					return
				}
			}
		case hasMagic(pattern):
			match := fnmatch(pattern)
			for _, name := range listNames(dir, dirsOnly) {
				if isHidden(name) && !isHidden(pattern) {
					continue
				}
				if match(name) && !yield(name) {
					return
				}
			}
		case pattern == "":
			if isDir(dir) {
				yield("")
			}
		default:
			if _, err := os.Lstat(joinPath(orDot(dir), pattern)); err == nil {
				yield(pattern)
			}
		}
	}
}

// walkNames yields every name under dir, recursively, hidden ones left
// out: Python's _rlistdir.
func walkNames(dir string, dirsOnly bool) func(func(string) bool) {
	return func(yield func(string) bool) {
		var walk func(dir, prefix string) bool
		walk = func(dir, prefix string) bool {
			for _, name := range listNames(dir, dirsOnly) {
				if isHidden(name) {
					continue
				}
				if !yield(joinPath(prefix, name)) {
					return false
				}
				if !walk(joinPath(dir, name), joinPath(prefix, name)) {
					return false
				}
			}
			return true
		}
		walk(orDot(dir), "")
	}
}

func orDot(dir string) string {
	if dir == "" {
		return "."
	}
	return dir
}

// listNames returns the sorted names in dir (folders only with dirsOnly,
// symbolic links to folders included); nothing if it cannot be read.
func listNames(dir string, dirsOnly bool) []string {
	entries, err := os.ReadDir(orDot(dir))
	if err != nil {
		return nil
	}
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		if dirsOnly && !e.IsDir() {
			if e.Type()&fs.ModeSymlink == 0 || !isDir(filepath.Join(orDot(dir), e.Name())) {
				continue
			}
		}
		names = append(names, e.Name())
	}
	return names
}

func isDir(p string) bool {
	fi, err := os.Stat(orDot(p))
	return err == nil && fi.IsDir()
}

// fnmatch returns a matcher for a shell pattern, as Python's fnmatch: "*"
// is any text, "?" any character, "[...]" a set ("[!...]" its complement),
// and a "[" without its "]" is itself; there are no escapes.
func fnmatch(pattern string) func(string) bool {
	p := []rune(pattern)
	return func(name string) bool {
		return matchRunes(p, []rune(name))
	}
}

func matchRunes(p, s []rune) bool {
	for len(p) > 0 {
		switch p[0] {
		case '*':
			for len(p) > 0 && p[0] == '*' {
				p = p[1:]
			}
			if len(p) == 0 {
				return true
			}
			for i := 0; i <= len(s); i++ {
				if matchRunes(p, s[i:]) {
					return true
				}
			}
			return false
		case '?':
			if len(s) == 0 {
				return false
			}
			p, s = p[1:], s[1:]
		case '[':
			set, n := parseSet(p)
			if n == 0 { // no closing bracket: a literal "["
				if len(s) == 0 || s[0] != '[' {
					return false
				}
				p, s = p[1:], s[1:]
				continue
			}
			if len(s) == 0 || !set(s[0]) {
				return false
			}
			p, s = p[n:], s[1:]
		default:
			if len(s) == 0 || s[0] != p[0] {
				return false
			}
			p, s = p[1:], s[1:]
		}
	}
	return len(s) == 0
}

// parseSet parses the "[...]" at the start of p and returns its test and
// length, or a zero length when it is not closed.
func parseSet(p []rune) (func(rune) bool, int) {
	i := 1
	negate := false
	if i < len(p) && p[i] == '!' {
		negate = true
		i++
	}
	start := i
	if i < len(p) && p[i] == ']' {
		i++ // a leading "]" is a member
	}
	for i < len(p) && p[i] != ']' {
		i++
	}
	if i >= len(p) {
		return nil, 0
	}
	members := p[start:i]
	return func(c rune) bool {
		in := false
		for j := 0; j < len(members); j++ {
			if j+2 < len(members) && members[j+1] == '-' {
				if members[j] <= c && c <= members[j+2] {
					in = true
				}
				j += 2
				continue
			}
			if members[j] == c {
				in = true
			}
		}
		return in != negate
	}, i + 1
}
