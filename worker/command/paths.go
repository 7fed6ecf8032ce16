package command

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// resolve returns the path a command works on for the path p the master
// sent: p itself, or p taken from the base folder when relative. Unless
// the worker is unconfined, a path that leads outside the base folder,
// by "../" or through a symbolic link, is an error wrapping
// ErrOutsideBase.
//
// The check is made when the command starts; a process that swaps a
// folder for a symbolic link while a transfer runs is not guarded against.
func (r *run) resolve(p string) (string, error) {
	if !filepath.IsAbs(p) {
		p = filepath.Join(r.base, p)
	}
	if r.opts.Unconfined {
		return p, nil
	}
	clean := filepath.Clean(p)
	if !within(r.base, clean) {
		return "", fmt.Errorf("%s: path %q is %w %q", r.name, p, ErrOutsideBase, r.base)
	}
	if r.realBase == "" {
		rb, err := realPath(r.base)
		if err != nil {
			return "", fmt.Errorf("%s: worker base folder: %w", r.name, err)
		}
		r.realBase = rb
	}
	real, err := realPath(clean)
	if err != nil {
		return "", fmt.Errorf("%s: path %q: %w", r.name, p, err)
	}
	if !within(r.realBase, real) {
		return "", fmt.Errorf("%s: path %q leads through a symbolic link to %q, %w %q",
			r.name, p, real, ErrOutsideBase, r.base)
	}
	return p, nil
}

// within reports whether the clean absolute path p is base or inside it.
func within(base, p string) bool {
	if p == base {
		return true
	}
	if !strings.HasSuffix(base, string(filepath.Separator)) {
		base += string(filepath.Separator)
	}
	return strings.HasPrefix(p, base)
}

// realPath resolves the symbolic links of the clean absolute path p, the
// parts of it that exist: what opening or creating p would reach. Unlike
// filepath.EvalSymlinks, it accepts paths that do not exist yet, and
// follows a dangling link to where a new file would be created.
func realPath(p string) (string, error) {
	vol := filepath.VolumeName(p)
	resolved := vol + string(filepath.Separator)
	rest := strings.Split(p[len(vol):], string(filepath.Separator))
	links := 0
	for len(rest) > 0 {
		c := rest[0]
		rest = rest[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			resolved = filepath.Dir(resolved)
			continue
		}
		next := filepath.Join(resolved, c)
		fi, err := os.Lstat(next)
		switch {
		case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ENOTDIR):
			resolved = next
			continue
		case err != nil:
			return "", err
		case fi.Mode()&fs.ModeSymlink == 0:
			resolved = next
			continue
		}
		links++
		if links > 255 {
			return "", fmt.Errorf("%s: too many levels of symbolic links", p)
		}
		target, err := os.Readlink(next)
		if err != nil {
			return "", err
		}
		if filepath.IsAbs(target) {
			v := filepath.VolumeName(target)
			resolved = v + string(filepath.Separator)
			target = target[len(v):]
		}
		rest = append(strings.Split(target, string(filepath.Separator)), rest...)
	}
	return resolved, nil
}
