package steps

import (
	"archive/tar"
	"compress/bzip2"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/kilnci/kiln/ci"
)

// FileUpload copies a file from the worker to the master, as Buildbot's
// step of that name. The file is written beside its destination and renamed
// into place once the worker reports success, so a reader never sees half a
// file, and a failed upload leaves an existing destination as it was.
type FileUpload struct {
	ci.StepOptions
	// WorkerSrc is the file on the worker, relative to Workdir; a string or
	// a ci.Renderable. Required.
	WorkerSrc any
	// MasterDest is where the file goes on the master, relative to the
	// master's base folder; a string or a ci.Renderable. Required.
	MasterDest any
	// Workdir is as for ShellCommand.
	Workdir any
	// MaxSize fails the upload of a larger file (0: no limit).
	MaxSize int64
	// BlockSize is the size of the blocks sent (DefaultBlockSize if 0).
	BlockSize int
	// Mode, when non-zero, is given to the file on the master.
	Mode fs.FileMode
	// KeepStamp keeps the file's access and modification times.
	KeepStamp bool
	// URL, when set, is linked from the step (for example where the web
	// server publishes MasterDest).
	URL string
}

// Options implements ci.Step, naming the step "upload" by default.
func (u *FileUpload) Options() ci.StepOptions { return named(u.StepOptions, "upload") }

// Validate checks the configuration.
func (u *FileUpload) Validate() error {
	return errors.Join(required("WorkerSrc", u.WorkerSrc), required("MasterDest", u.MasterDest), checkField("Workdir", u.Workdir))
}

func required(name string, v any) error {
	if v == nil || v == "" {
		return fmt.Errorf("%s is not set", name)
	}
	return checkField(name, v)
}

// renderUpload renders the worker source, master destination and working
// folder of an upload.
func renderUpload(ctx context.Context, s *ci.StepRun, workerSrc, masterDest, workdir any) (src, dest, wd string, err error) {
	if src, err = s.RenderString(ctx, workerSrc); err != nil {
		return "", "", "", fmt.Errorf("workersrc: %w", err)
	}
	if dest, err = masterPath(ctx, s, "masterdest", masterDest); err != nil {
		return "", "", "", err
	}
	wd, err = renderWorkdir(ctx, s, workdir)
	return src, dest, wd, err
}

// Run implements ci.Step.
func (u *FileUpload) Run(ctx context.Context, s *ci.StepRun) (ci.Result, error) {
	src, dest, workdir, err := renderUpload(ctx, s, u.WorkerSrc, u.MasterDest, u.Workdir)
	if err != nil {
		return ci.Exception, err
	}
	s.SetStateString("uploading " + filepath.Base(src))
	w, err := newFileWriter(dest, u.MaxSize, u.Mode)
	if err != nil {
		return ci.Exception, err
	}
	defer w.abort()
	cmd := &ci.RemoteCommand{
		Name: "uploadFile",
		Args: map[string]any{
			"workdir":   workdir,
			"workersrc": src,
			"maxsize":   maxSize(u.MaxSize),
			"blocksize": blockSize(u.BlockSize),
			"keepstamp": u.KeepStamp,
		},
		Upload: w,
	}
	res, err := commandResult(cmd, runRemote(ctx, s, cmd, true))
	if w.overflow {
		// Whatever the worker says: the file is not kept (abort removes
		// what was received).
		cmd.Stdio.AddHeader(fmt.Sprintf("the file is larger than MaxSize (%d bytes): it is not kept\n", u.MaxSize))
		s.SetStateString(fmt.Sprintf("%s larger than %d bytes", filepath.Base(src), u.MaxSize))
		return ci.Failure, err
	}
	if err != nil || res != ci.Success {
		return res, err
	}
	if !w.closed {
		cmd.Stdio.AddHeader("the worker did not finish sending the file\n")
		return ci.Failure, nil
	}
	if err := w.commit(); err != nil {
		cmd.Stdio.AddHeader(err.Error() + "\n")
		return ci.Failure, nil
	}
	if u.URL != "" {
		s.AddURL(filepath.Base(dest), u.URL)
	}
	s.SetStateString("uploaded " + filepath.Base(src))
	return ci.Success, nil
}

func maxSize(n int64) any {
	if n <= 0 {
		return nil
	}
	return n
}

func blockSize(n int) int {
	if n <= 0 {
		return DefaultBlockSize
	}
	return n
}

// fileWriter receives an uploaded file into a temporary file beside its
// destination; commit puts it in place.
type fileWriter struct {
	dest      string
	tmp       *os.File
	remaining int64 // -1: no limit
	mode      fs.FileMode
	closed    bool // the worker finished sending
	committed bool
	times     *[2]time.Time
	overflow  bool // more than the size limit was sent
}

var _ ci.FileWriter = (*fileWriter)(nil)

func newFileWriter(dest string, max int64, mode fs.FileMode) (*fileWriter, error) {
	if err := os.MkdirAll(filepath.Dir(dest), 0o755); err != nil {
		return nil, fmt.Errorf("upload: create folder for %s: %w", dest, err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(dest), "."+filepath.Base(dest)+".*.part")
	if err != nil {
		return nil, fmt.Errorf("upload: %w", err)
	}
	w := &fileWriter{dest: dest, tmp: tmp, remaining: -1, mode: mode}
	if max > 0 {
		w.remaining = max
	}
	return w, nil
}

// Write stores a block; past the size limit, data is dropped and the
// upload fails, whatever the worker reports.
func (w *fileWriter) Write(p []byte) (int, error) {
	if w.closed {
		return 0, errors.New("upload: write after close")
	}
	n := len(p)
	if w.remaining >= 0 {
		if int64(len(p)) > w.remaining {
			p = p[:w.remaining]
			w.overflow = true
		}
		w.remaining -= int64(len(p))
	}
	if _, err := w.tmp.Write(p); err != nil {
		return 0, fmt.Errorf("upload: %w", err)
	}
	return n, nil
}

func (w *fileWriter) Utime(access, modified time.Time) error {
	w.times = &[2]time.Time{access, modified}
	return nil
}

func (w *fileWriter) Unpack() error { return errors.New("upload: not a directory upload") }

// Close ends the transfer.
func (w *fileWriter) Close() error {
	if w.closed {
		return nil
	}
	if err := w.tmp.Close(); err != nil {
		return fmt.Errorf("upload: %w", err)
	}
	w.closed = true
	return nil
}

// commit puts the received file in place, with its mode and times.
func (w *fileWriter) commit() error {
	mode := w.mode
	if mode == 0 {
		mode = 0o644
	}
	if err := os.Chmod(w.tmp.Name(), mode); err != nil {
		return fmt.Errorf("upload: %w", err)
	}
	if w.times != nil {
		if err := os.Chtimes(w.tmp.Name(), w.times[0], w.times[1]); err != nil {
			return fmt.Errorf("upload: %w", err)
		}
	}
	if err := os.Rename(w.tmp.Name(), w.dest); err != nil {
		return fmt.Errorf("upload: %w", err)
	}
	w.committed = true
	return nil
}

// abort removes the temporary file of an upload that was not committed.
func (w *fileWriter) abort() {
	if !w.committed {
		w.tmp.Close()
		os.Remove(w.tmp.Name())
	}
}

// FileDownload copies a file from the master to the worker, as Buildbot's
// step of that name.
type FileDownload struct {
	ci.StepOptions
	// MasterSrc is the file on the master, relative to the master's base
	// folder; a string or a ci.Renderable. Required.
	MasterSrc any
	// WorkerDest is where it goes on the worker, relative to Workdir; a
	// string or a ci.Renderable. Required.
	WorkerDest any
	// Workdir is as for ShellCommand.
	Workdir any
	// MaxSize fails the download of a larger file (0: no limit).
	MaxSize int64
	// BlockSize is the size of the blocks sent (DefaultBlockSize if 0).
	BlockSize int
	// Mode, when non-zero, is given to the file on the worker.
	Mode fs.FileMode
}

// Options implements ci.Step, naming the step "download" by default.
func (d *FileDownload) Options() ci.StepOptions { return named(d.StepOptions, "download") }

// Validate checks the configuration.
func (d *FileDownload) Validate() error {
	return errors.Join(required("MasterSrc", d.MasterSrc), required("WorkerDest", d.WorkerDest), checkField("Workdir", d.Workdir))
}

// Run implements ci.Step.
func (d *FileDownload) Run(ctx context.Context, s *ci.StepRun) (ci.Result, error) {
	src, err := masterPath(ctx, s, "mastersrc", d.MasterSrc)
	if err != nil {
		return ci.Exception, err
	}
	dest, err := s.RenderString(ctx, d.WorkerDest)
	if err != nil {
		return ci.Exception, fmt.Errorf("workerdest: %w", err)
	}
	workdir, err := renderWorkdir(ctx, s, d.Workdir)
	if err != nil {
		return ci.Exception, err
	}
	stdio, err := s.AddLog(ctx, "stdio", ci.LogStream)
	if err != nil {
		return ci.Exception, err
	}
	f, err := os.Open(src)
	if err != nil {
		stdio.AddHeader(fmt.Sprintf("cannot read %s on the master: %v\n", src, errors.Unwrap(err)))
		return ci.Failure, nil
	}
	defer f.Close()
	var mode any
	if d.Mode != 0 {
		mode = int(d.Mode.Perm())
	}
	s.SetStateString("downloading " + filepath.Base(src))
	cmd := &ci.RemoteCommand{
		Name: "downloadFile",
		Args: map[string]any{
			"workdir":    workdir,
			"workerdest": dest,
			"maxsize":    maxSize(d.MaxSize),
			"blocksize":  blockSize(d.BlockSize),
			"mode":       mode,
		},
		Stdio:    stdio,
		Download: f,
	}
	res, err := commandResult(cmd, s.RunCommand(ctx, cmd))
	if res == ci.Success {
		s.SetStateString("downloaded " + filepath.Base(src))
	}
	return res, err
}

// DirectoryUpload copies a folder from the worker to the master, as
// Buildbot's step of that name: the worker sends a tar archive, which the
// master unpacks into MasterDest. Entries that would land outside
// MasterDest (absolute paths, "..", links pointing out) are refused.
type DirectoryUpload struct {
	ci.StepOptions
	// WorkerSrc is the folder on the worker, relative to Workdir. Required.
	WorkerSrc any
	// MasterDest is the folder on the master, relative to the master's base
	// folder. Required.
	MasterDest any
	// Workdir is as for ShellCommand.
	Workdir any
	// Compress is "", "gz" or "bz2": how the worker compresses the archive.
	Compress string
	// MaxSize fails the upload of a larger archive (0: no limit).
	MaxSize int64
	// BlockSize is the size of the blocks sent (DefaultBlockSize if 0).
	BlockSize int
	// URL, when set, is linked from the step.
	URL string
}

// Options implements ci.Step, naming the step "upload" by default.
func (u *DirectoryUpload) Options() ci.StepOptions { return named(u.StepOptions, "upload") }

// Validate checks the configuration.
func (u *DirectoryUpload) Validate() error {
	var err error
	switch u.Compress {
	case "", "gz", "bz2":
	default:
		err = fmt.Errorf("Compress %q is not \"\", \"gz\" or \"bz2\"", u.Compress)
	}
	return errors.Join(required("WorkerSrc", u.WorkerSrc), required("MasterDest", u.MasterDest), checkField("Workdir", u.Workdir), err)
}

// Run implements ci.Step.
func (u *DirectoryUpload) Run(ctx context.Context, s *ci.StepRun) (ci.Result, error) {
	src, dest, workdir, err := renderUpload(ctx, s, u.WorkerSrc, u.MasterDest, u.Workdir)
	if err != nil {
		return ci.Exception, err
	}
	w, err := newDirWriter(dest, u.MaxSize, u.Compress)
	if err != nil {
		return ci.Exception, err
	}
	defer w.Close()
	var compress any
	if u.Compress != "" {
		compress = u.Compress
	}
	s.SetStateString("uploading " + filepath.Base(src))
	cmd := &ci.RemoteCommand{
		Name: "uploadDirectory",
		Args: map[string]any{
			"workdir":   workdir,
			"workersrc": src,
			"maxsize":   maxSize(u.MaxSize),
			"blocksize": blockSize(u.BlockSize),
			"compress":  compress,
		},
		Upload: w,
	}
	res, err := commandResult(cmd, runRemote(ctx, s, cmd, true))
	if w.overflow {
		cmd.Stdio.AddHeader(fmt.Sprintf("the archive is larger than MaxSize (%d bytes): nothing is unpacked\n", u.MaxSize))
		s.SetStateString(fmt.Sprintf("%s larger than %d bytes", filepath.Base(src), u.MaxSize))
		return ci.Failure, err
	}
	if err != nil || res != ci.Success {
		return res, err
	}
	if !w.unpacked {
		cmd.Stdio.AddHeader("the worker did not finish sending the folder\n")
		return ci.Failure, nil
	}
	cmd.Stdio.AddHeader(fmt.Sprintf("unpacked %d files into %s\n", w.files, dest))
	if u.URL != "" {
		s.AddURL(filepath.Base(dest), u.URL)
	}
	s.SetStateString("uploaded " + filepath.Base(src))
	return ci.Success, nil
}

// dirWriter receives a tar archive and unpacks it into dest.
type dirWriter struct {
	dest      string
	compress  string
	tmp       *os.File
	max       int64 // of the archive, and of what it unpacks to (0: no limit)
	remaining int64
	overflow  bool
	unpacked  bool
	files     int
}

func newDirWriter(dest string, max int64, compress string) (*dirWriter, error) {
	tmp, err := os.CreateTemp("", "kiln-dirupload-*.tar")
	if err != nil {
		return nil, fmt.Errorf("directory upload: %w", err)
	}
	w := &dirWriter{dest: dest, compress: compress, tmp: tmp, remaining: -1}
	if max > 0 {
		w.max, w.remaining = max, max
	}
	return w, nil
}

func (w *dirWriter) Write(p []byte) (int, error) {
	n := len(p)
	if w.remaining >= 0 {
		if int64(len(p)) > w.remaining {
			p = p[:w.remaining]
			w.overflow = true
		}
		w.remaining -= int64(len(p))
	}
	if _, err := w.tmp.Write(p); err != nil {
		return 0, fmt.Errorf("directory upload: %w", err)
	}
	return n, nil
}

func (w *dirWriter) Utime(access, modified time.Time) error { return nil }

// Unpack extracts the archive received into dest, within the size limit
// on what it writes.
func (w *dirWriter) Unpack() error {
	if w.overflow {
		return errors.New("directory upload: the archive is larger than MaxSize")
	}
	if _, err := w.tmp.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("directory upload: %w", err)
	}
	var r io.Reader = w.tmp
	switch w.compress {
	case "gz":
		gz, err := gzip.NewReader(w.tmp)
		if err != nil {
			return fmt.Errorf("directory upload: %w", err)
		}
		defer gz.Close()
		r = gz
	case "bz2":
		r = bzip2.NewReader(w.tmp)
	}
	n, err := untar(r, w.dest, w.max)
	w.files = n
	if err != nil {
		return fmt.Errorf("directory upload: %w", err)
	}
	w.unpacked = true
	return nil
}

// Close removes the temporary archive.
func (w *dirWriter) Close() error {
	if w.tmp == nil {
		return nil
	}
	w.tmp.Close()
	err := os.Remove(w.tmp.Name())
	w.tmp = nil
	return err
}

// untar extracts a tar stream into dest, refusing entries that would land
// outside it, links whose target resolves outside it (through other links
// too), and more than max bytes of files in all (0: no limit: a small
// compressed archive may unpack to a huge one). It returns the number of
// regular files written.
func untar(r io.Reader, dest string, max int64) (int, error) {
	if err := os.MkdirAll(dest, 0o755); err != nil {
		return 0, err
	}
	root, err := os.OpenRoot(dest)
	if err != nil {
		return 0, err
	}
	defer root.Close()
	tr := tar.NewReader(r)
	files := 0
	var written int64
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files, nil
		}
		if err != nil {
			return files, fmt.Errorf("read archive: %w", err)
		}
		name := filepath.Clean(strings.TrimPrefix(h.Name, "./"))
		if name == "." || h.Typeflag == tar.TypeDir && strings.Trim(h.Name, "/") == "" {
			// The folder itself: buildbot-worker's tarfile writes it
			// as "/" (its name is empty, plus a folder's slash).
			continue
		}
		if !filepath.IsLocal(name) {
			return files, fmt.Errorf("archive entry %q would land outside %s", h.Name, dest)
		}
		mode := fs.FileMode(h.Mode).Perm()
		switch h.Typeflag {
		case tar.TypeDir:
			if err := root.MkdirAll(name, mode|0o700); err != nil {
				return files, err
			}
		case tar.TypeReg:
			if err := root.MkdirAll(filepath.Dir(name), 0o755); err != nil {
				return files, err
			}
			f, err := root.OpenFile(name, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, mode)
			if err != nil {
				return files, err
			}
			var src io.Reader = tr
			if max > 0 {
				src = io.LimitReader(tr, max-written+1)
			}
			n, err := io.Copy(f, src)
			written += n
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return files, err
			}
			if max > 0 && written > max {
				root.Remove(name)
				return files, fmt.Errorf("the archive unpacks to more than %d bytes (MaxSize)", max)
			}
			files++
		case tar.TypeSymlink:
			target := h.Linkname
			if filepath.IsAbs(target) || !insideRoot(root, filepath.Dir(name)+"/"+target) {
				return files, fmt.Errorf("archive link %q -> %q points outside %s", h.Name, h.Linkname, dest)
			}
			if err := root.MkdirAll(filepath.Dir(name), 0o755); err != nil {
				return files, err
			}
			if err := root.Symlink(target, name); err != nil {
				return files, err
			}
		default:
			return files, fmt.Errorf("archive entry %q has an unsupported type %q", h.Name, h.Typeflag)
		}
	}
}

// insideRoot reports whether path, relative to root and not cleaned,
// stays inside it once the links already in root are followed, one
// component at a time: a chain of relative links ("a" -> ".", then
// "b" -> "a/..", which a lexical check takes for ".") cannot lead out of
// it.
func insideRoot(root *os.Root, path string) bool {
	var resolved []string // components of the path resolved so far
	pending := strings.Split(filepath.ToSlash(path), "/")
	for hops := 0; len(pending) > 0; {
		c := pending[0]
		pending = pending[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			if len(resolved) == 0 {
				return false
			}
			resolved = resolved[:len(resolved)-1]
			continue
		}
		here := filepath.Join(append(resolved, c)...)
		fi, err := root.Lstat(here)
		if err != nil || fi.Mode()&fs.ModeSymlink == 0 {
			// Not there yet, or not a link: a name.
			resolved = append(resolved, c)
			continue
		}
		if hops++; hops > 40 {
			return false // a loop
		}
		target, err := root.Readlink(here)
		if err != nil || filepath.IsAbs(target) {
			return false
		}
		pending = append(strings.Split(filepath.ToSlash(target), "/"), pending...)
	}
	return true
}
