package ci

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
)

// ErrSecretNotFound is returned by a SecretProvider that does not have the
// secret asked for.
var ErrSecretNotFound = errors.New("secret not found")

// A SecretProvider gives secrets by name: passwords and tokens that builds
// use through Interpolate's %(secret:name)s, kept out of the configuration
// and out of the store. The master asks its providers in order and takes
// the first answer; it then redacts the value everywhere (see Redactor).
// Providers are called concurrently.
type SecretProvider interface {
	// Secret returns the value of the secret called name, or an error
	// wrapping ErrSecretNotFound.
	Secret(ctx context.Context, name string) (string, error)
}

// EnvSecrets gives the environment variable Prefix+name as the secret
// called name.
type EnvSecrets struct {
	Prefix string
}

// Secret implements SecretProvider.
func (e EnvSecrets) Secret(ctx context.Context, name string) (string, error) {
	v, ok := os.LookupEnv(e.Prefix + name)
	if !ok {
		return "", fmt.Errorf("environment variable %s: %w", e.Prefix+name, ErrSecretNotFound)
	}
	return v, nil
}

// DirSecrets reads each secret from a file of its name in Dir, as
// Buildbot's SecretInAFile does; a final newline is removed unless
// KeepNewline is set. Names that are not plain file names are refused.
type DirSecrets struct {
	Dir         string
	KeepNewline bool
}

// Secret implements SecretProvider.
func (d DirSecrets) Secret(ctx context.Context, name string) (string, error) {
	if name == "" || name != filepath.Base(name) || strings.HasPrefix(name, ".") {
		return "", fmt.Errorf("secret name %q is not a file name: %w", name, ErrSecretNotFound)
	}
	b, err := os.ReadFile(filepath.Join(d.Dir, name))
	if errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("no file %s in %s: %w", name, d.Dir, ErrSecretNotFound)
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

// FileSecrets reads secrets from a file of KEY=VALUE lines (blank lines and
// lines starting with # are ignored; a value may be in single or double
// quotes). The file is read on first use and again when it changes.
type FileSecrets struct {
	Path string

	mu     sync.Mutex
	values map[string]string
	stamp  [2]int64 // size and modification time of what was read
}

// Secret implements SecretProvider.
func (f *FileSecrets) Secret(ctx context.Context, name string) (string, error) {
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
		return "", fmt.Errorf("no %s in %s: %w", name, f.Path, ErrSecretNotFound)
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

// Secret returns the secret called name from the master's providers, and
// from then on redacts its value everywhere the master writes (see
// Redactor).
func (m *Master) Secret(ctx context.Context, name string) (string, error) {
	if len(m.cfg.Secrets) == 0 {
		return "", fmt.Errorf("secret %q: no secret providers are configured", name)
	}
	for _, p := range m.cfg.Secrets {
		v, err := p.Secret(ctx, name)
		if errors.Is(err, ErrSecretNotFound) {
			continue
		}
		if err != nil {
			return "", fmt.Errorf("secret %q: %w", name, err)
		}
		m.redactor.Add(name, v)
		return v, nil
	}
	return "", fmt.Errorf("secret %q: %w", name, ErrSecretNotFound)
}

// Secret implements Interpolate's %(secret:name)s for the step's build.
func (s *StepRun) Secret(ctx context.Context, name string) (string, error) {
	return s.build.m.Secret(ctx, name)
}
