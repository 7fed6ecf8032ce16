package command

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// lookPath finds the program to run as execvpe would in the command's own
// environment: a name with a slash is used as it is (from the workdir when
// relative), others are searched in the command's PATH.
func lookPath(name, pathVar, dir string) (string, error) {
	if strings.Contains(name, "/") {
		return name, nil
	}
	if pathVar == "" {
		pathVar = "/bin:/usr/bin"
	}
	for _, d := range filepath.SplitList(pathVar) {
		p := filepath.Join(d, name)
		full := p
		if !filepath.IsAbs(full) {
			full = filepath.Join(dir, p)
		}
		if fi, err := os.Stat(full); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			if !filepath.IsAbs(p) {
				return full, nil
			}
			return p, nil
		}
	}
	return "", fmt.Errorf("cannot run %s: executable file not found in PATH", strconv.Quote(name))
}

// makedirs creates path and its parents unless it is a folder already:
// Python's "if not os.path.isdir(p): os.makedirs(p)", whose error is the
// one of the last mkdir (EEXIST when path is a file).
func makedirs(path string) error {
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		return nil
	}
	return mkdirs(path)
}

func mkdirs(path string) error {
	parent := filepath.Dir(path)
	if parent != path {
		if _, err := os.Stat(parent); errors.Is(err, fs.ErrNotExist) {
			if err := mkdirs(parent); err != nil && !errors.Is(err, fs.ErrExist) {
				return err
			}
		}
	}
	return os.Mkdir(path, 0o777)
}
