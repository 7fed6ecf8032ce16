package worker

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// ConfigFile is the name of a worker's configuration file, in its base
// folder. kiln-worker create-worker writes it; kiln-worker start reads it.
//
// It holds KEY=VALUE lines; blank lines and lines starting with "#" are
// ignored, spaces around keys and values too. A value in double quotes is
// a Go string literal (kiln-worker quotes values that need it). Keys:
//
//	master                "host:port", "host", or a ws:// or wss:// URL (required)
//	name                  the worker's name (required)
//	password              the worker's password (required, may be empty)
//	basedir               the base folder; absent, or relative, means from the
//	                      folder holding the file (a relocatable worker)
//	ca_file               PEM certificates a wss:// master must chain to;
//	                      relative to the base folder
//	allow_plaintext       true to connect with plain ws:// to a master that
//	                      is not on this machine
//	unconfined            true to let commands use paths outside the base folder
//	delete_leftover_dirs  true to have the master delete unused builder folders
//	max_backoff           longest wait between connection attempts (a Go
//	                      duration, "5m")
//
// The file holds the password: it is written with mode 0600.
const ConfigFile = "kiln-worker.conf"

// ReadConfig reads the configuration file of the worker whose base folder
// is dir, and returns the worker it describes, with BaseDir absolute.
func ReadConfig(dir string) (*Worker, error) {
	path := filepath.Join(dir, ConfigFile)
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read worker configuration: %w", err)
	}
	w, err := ParseConfig(data, dir)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return w, nil
}

// ParseConfig parses the contents of a configuration file found in the
// folder dir, reporting every problem.
func ParseConfig(data []byte, dir string) (*Worker, error) {
	w := &Worker{}
	seen := map[string]bool{}
	var errs []error
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if !ok || k == "" {
			errs = append(errs, fmt.Errorf("line %d: not KEY=VALUE", n))
			continue
		}
		if strings.HasPrefix(v, `"`) {
			u, err := strconv.Unquote(v)
			if err != nil {
				errs = append(errs, fmt.Errorf("line %d: %s: bad quoted value", n, k))
				continue
			}
			v = u
		}
		if seen[k] {
			errs = append(errs, fmt.Errorf("line %d: %s given twice", n, k))
			continue
		}
		seen[k] = true
		if err := w.setConfig(k, v); err != nil {
			errs = append(errs, fmt.Errorf("line %d: %w", n, err))
		}
	}
	if err := sc.Err(); err != nil {
		errs = append(errs, err)
	}
	for _, k := range []string{"master", "name", "password"} {
		if !seen[k] {
			errs = append(errs, fmt.Errorf("no %s", k))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	base := w.BaseDir
	if base == "" {
		base = "."
	}
	if !filepath.IsAbs(base) {
		base = filepath.Join(dir, base)
	}
	abs, err := filepath.Abs(base)
	if err != nil {
		return nil, fmt.Errorf("base folder: %w", err)
	}
	w.BaseDir = abs
	return w, nil
}

func (w *Worker) setConfig(k, v string) error {
	var err error
	switch k {
	case "master":
		w.Master = v
	case "name":
		w.Name = v
	case "password":
		w.Password = v
	case "basedir":
		w.BaseDir = v
	case "ca_file":
		w.CAFile = v
	case "allow_plaintext":
		w.AllowPlaintext, err = strconv.ParseBool(v)
	case "unconfined":
		w.Unconfined, err = strconv.ParseBool(v)
	case "delete_leftover_dirs":
		w.DeleteLeftoverDirs, err = strconv.ParseBool(v)
	case "max_backoff":
		w.MaxBackoff, err = time.ParseDuration(v)
		if err == nil && w.MaxBackoff <= 0 {
			err = errors.New("not positive")
		}
	default:
		return fmt.Errorf("unknown key %q", k)
	}
	if err != nil {
		return fmt.Errorf("%s: %q: %w", k, v, err)
	}
	return nil
}

// FormatConfig returns the configuration file of w: the keys ParseConfig
// reads, for the fields that are set. An empty BaseDir is left out, which
// makes the worker relocatable.
func FormatConfig(w *Worker) []byte {
	var b bytes.Buffer
	b.WriteString("# kiln-worker configuration (see kiln-worker help create-worker).\n")
	b.WriteString("# KEY=VALUE lines; a value in double quotes is a Go string literal.\n")
	put := func(k, v string) { fmt.Fprintf(&b, "%s=%s\n", k, quoteConfig(v)) }
	put("master", w.Master)
	put("name", w.Name)
	put("password", w.Password)
	if w.BaseDir != "" {
		put("basedir", w.BaseDir)
	}
	if w.CAFile != "" {
		put("ca_file", w.CAFile)
	}
	if w.AllowPlaintext {
		put("allow_plaintext", "true")
	}
	if w.Unconfined {
		put("unconfined", "true")
	}
	if w.DeleteLeftoverDirs {
		put("delete_leftover_dirs", "true")
	}
	if w.MaxBackoff != 0 {
		put("max_backoff", w.MaxBackoff.String())
	}
	return b.Bytes()
}

// quoteConfig quotes a value that would not read back as itself.
func quoteConfig(v string) string {
	if v == "" || strings.TrimSpace(v) != v || strings.HasPrefix(v, `"`) ||
		strings.IndexFunc(v, func(r rune) bool { return !unicode.IsPrint(r) && r != ' ' }) >= 0 {
		return strconv.Quote(v)
	}
	return v
}
