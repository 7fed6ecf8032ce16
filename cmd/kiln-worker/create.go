package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/kilnci/kiln/worker"
)

// The info files create-worker writes, as buildbot-worker writes them.
var infoTemplates = []struct{ name, text string }{
	{"admin", "Your Name Here <admin@youraddress.invalid>\n"},
	{"host", "Please put a description of this build host here\n"},
}

func (m *Main) createWorker(args []string) error {
	fs := flags("create-worker")
	var relocatable, useTLS, plaintext, unconfined, deleteLeftover, quiet, force bool
	fs.BoolVar(&relocatable, "r", false, "")
	fs.BoolVar(&relocatable, "relocatable", false, "")
	fs.BoolVar(&useTLS, "use-tls", false, "")
	caFile := fs.String("ca-file", "", "")
	fs.BoolVar(&plaintext, "allow-plaintext", false, "")
	maxDelay := fs.Int("maxdelay", 300, "")
	fs.BoolVar(&unconfined, "unconfined", false, "")
	fs.BoolVar(&deleteLeftover, "delete-leftover-dirs", false, "")
	proto := fs.String("protocol", "msgpack_experimental_v7", "")
	fs.BoolVar(&quiet, "q", false, "")
	fs.BoolVar(&quiet, "quiet", false, "")
	fs.BoolVar(&force, "f", false, "")
	fs.BoolVar(&force, "force", false, "")
	if err := m.parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 4 {
		return usagef("create-worker: want BASEDIR MASTER NAME PASSWORD, got %d arguments", fs.NArg())
	}
	if *proto != "msgpack_experimental_v7" {
		return usagef("create-worker: kiln-worker speaks only msgpack_experimental_v7, not %q; give the master c['protocols'] = {'msgpack_experimental_v7': {'port': N}}", *proto)
	}
	if *maxDelay <= 0 {
		return usagef("create-worker: --maxdelay must be a positive number of seconds")
	}
	basedir, master := fs.Arg(0), fs.Arg(1)
	if useTLS {
		if strings.Contains(master, "://") {
			return usagef("create-worker: --use-tls is for a host:port MASTER; give a wss:// URL instead")
		}
		master = "wss://" + master + "/"
	}
	abs, err := filepath.Abs(basedir)
	if err != nil {
		return fmt.Errorf("create-worker: %w", err)
	}
	w := &worker.Worker{
		Master:             master,
		Name:               fs.Arg(2),
		Password:           fs.Arg(3),
		BaseDir:            abs,
		CAFile:             *caFile,
		AllowPlaintext:     plaintext,
		Unconfined:         unconfined,
		DeleteLeftoverDirs: deleteLeftover,
	}
	if *maxDelay != 300 {
		w.MaxBackoff = time.Duration(*maxDelay) * time.Second
	}
	if w.CAFile != "" && !relocatable {
		if w.CAFile, err = filepath.Abs(w.CAFile); err != nil {
			return fmt.Errorf("create-worker: %w", err)
		}
	}
	if err := w.Validate(); err != nil {
		return fmt.Errorf("create-worker: %w", err)
	}
	if relocatable {
		w.BaseDir = ""
	}

	out := m.Stdout
	if quiet {
		out = io.Discard
	}
	if err := makeBaseDir(out, basedir); err != nil {
		return err
	}
	if err := writeConfig(out, basedir, worker.FormatConfig(w)); err != nil {
		return err
	}
	if err := writeInfo(out, basedir); err != nil {
		return err
	}
	fmt.Fprintf(out, "worker configured in %s\n", basedir)
	return nil
}

func makeBaseDir(out io.Writer, dir string) error {
	if _, err := os.Stat(dir); err == nil {
		fmt.Fprintln(out, "updating existing installation")
		return nil
	}
	fmt.Fprintln(out, "mkdir", dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create-worker: %w", err)
	}
	return nil
}

// writeConfig writes the configuration file, or, when one with other
// contents is there, a .new file beside it, as buildbot-worker does with
// buildbot.tac.
func writeConfig(out io.Writer, dir string, data []byte) error {
	path := filepath.Join(dir, worker.ConfigFile)
	old, err := os.ReadFile(path)
	switch {
	case err == nil && bytes.Equal(old, data):
		fmt.Fprintf(out, "%s already exists and is correct\n", worker.ConfigFile)
		return nil
	case err == nil:
		fmt.Fprintf(out, "not touching existing %s\ncreating %s.new instead\n", worker.ConfigFile, worker.ConfigFile)
		path += ".new"
	case !errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("create-worker: %w", err)
	}
	if err := writePrivate(path, data); err != nil {
		return fmt.Errorf("create-worker: %w", err)
	}
	return nil
}

// writePrivate writes a file only its owner may read.
func writePrivate(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// writeInfo creates the info files that do not exist yet.
func writeInfo(out io.Writer, dir string) error {
	info := filepath.Join(dir, "info")
	if err := os.MkdirAll(info, 0o755); err != nil {
		return fmt.Errorf("create-worker: %w", err)
	}
	created := false
	for _, t := range infoTemplates {
		path := filepath.Join(info, t.name)
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err == nil {
			_, err = f.WriteString(t.text)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
		}
		if err != nil {
			return fmt.Errorf("create-worker: %w", err)
		}
		fmt.Fprintf(out, "Creating %s, you need to edit it appropriately.\n", filepath.Join("info", t.name))
		created = true
	}
	if created {
		fmt.Fprintf(out, "Please edit the files in %s appropriately.\n", info)
	}
	return nil
}
