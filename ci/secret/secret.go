// Package secret has the usual providers of a master's secrets
// (ci.SecretProvider): the environment (Env), a folder with a file per
// secret (Dir, as Buildbot's SecretInAFile) and a file of KEY=VALUE lines
// (File, read with ParseEnvFile). The master asks the providers of
// ci.MasterConfig.Secrets in order and redacts every value it is given;
// a provider answers an error wrapping ci.ErrSecretNotFound for a secret
// it does not have, so that the next one is asked.
package secret

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/kilnci/kiln/ci"
)

var (
	_ ci.SecretProvider = Env{}
	_ ci.SecretProvider = Dir{}
	_ ci.SecretProvider = (*File)(nil)
)

// Env gives the environment variable Prefix+name as the secret
// called name.
type Env struct {
	Prefix string
}

// Secret implements ci.SecretProvider.
func (e Env) Secret(ctx context.Context, name string) (string, error) {
	v, ok := os.LookupEnv(e.Prefix + name)
	if !ok {
		return "", fmt.Errorf("environment variable %s: %w", e.Prefix+name, ci.ErrSecretNotFound)
	}
	return v, nil
}

// Dir reads each secret from a file of its name in the folder Path, as
// Buildbot's SecretInAFile does; a final newline is removed unless
// KeepNewline is set. Names that are not plain file names are refused.
type Dir struct {
	Path        string
	KeepNewline bool
}

// Secret implements ci.SecretProvider.
func (d Dir) Secret(ctx context.Context, name string) (string, error) {
	if name == "" || name != filepath.Base(name) || strings.HasPrefix(name, ".") {
		return "", fmt.Errorf("secret name %q is not a file name: %w", name, ci.ErrSecretNotFound)
	}
	b, err := os.ReadFile(filepath.Join(d.Path, name))
	if errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("no file %s in %s: %w", name, d.Path, ci.ErrSecretNotFound)
	}
	if err != nil {
		return "", fmt.Errorf("read secret %s: %w", name, err)
	}
	if !d.KeepNewline {
		b = bytes.TrimSuffix(b, []byte("\n"))
		b = bytes.TrimSuffix(b, []byte("\r"))
	}
	return string(b), nil
}

// File reads secrets from a file of KEY=VALUE lines (blank lines and
// lines starting with # are ignored; a value may be in single or double
// quotes). The file is read on first use and again when it changes.
type File struct {
	Path string

	mu     sync.Mutex
	values map[string]string
	stamp  [2]int64 // size and modification time of what was read
}

// Secret implements ci.SecretProvider.
func (f *File) Secret(ctx context.Context, name string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fi, err := os.Stat(f.Path)
	if err != nil {
		return "", fmt.Errorf("read secrets: %w", err)
	}
	stamp := [2]int64{fi.Size(), fi.ModTime().UnixNano()}
	if f.values == nil || stamp != f.stamp {
		data, err := os.ReadFile(f.Path)
		if err != nil {
			return "", fmt.Errorf("read secrets: %w", err)
		}
		values, err := ParseEnvFile(data)
		if err != nil {
			return "", fmt.Errorf("read secrets %s: %w", f.Path, err)
		}
		f.values, f.stamp = values, stamp
	}
	v, ok := f.values[name]
	if !ok {
		return "", fmt.Errorf("no %s in %s: %w", name, f.Path, ci.ErrSecretNotFound)
	}
	return v, nil
}

// ParseEnvFile parses KEY=VALUE lines: blank lines and lines starting with
// # are ignored, "export " before a key is allowed, and a value in single
// or double quotes has them removed. A line without "=" is an error naming
// its number (never its content, which may be a secret).
func ParseEnvFile(data []byte) (map[string]string, error) {
	values := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		line = strings.TrimPrefix(line, "export ")
		k, v, ok := strings.Cut(line, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" || strings.ContainsAny(k, " \t") {
			return nil, fmt.Errorf("line %d is not KEY=VALUE", n)
		}
		v = strings.TrimSpace(v)
		if v != "" && (v[0] == '"' || v[0] == '\'') {
			q := v[0]
			if len(v) < 2 || v[len(v)-1] != q {
				// The value is not shown: it is a secret.
				return nil, fmt.Errorf("line %d (%s): the value's %c quote is not closed on that line", n, k, q)
			}
			v = v[1 : len(v)-1]
		}
		values[k] = v
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return values, nil
}
