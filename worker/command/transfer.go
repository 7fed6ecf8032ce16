package command

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
)

// transfer holds what the three transfer commands share: buildbot-worker's
// TransferCommand.
type transfer struct {
	r         *run
	path      string
	blocksize int
	maxsize   int64 // -1: no limit
	rc        int
	stderr    string
}

func newTransfer(r *run) (*transfer, error) {
	t := &transfer{r: r, maxsize: -1}
	var err error
	if t.path, err = r.path("path"); err != nil {
		return nil, err
	}
	bs, ok := toInt(r.args["blocksize"])
	if !ok || bs <= 0 {
		return nil, fmt.Errorf("%s: argument \"blocksize\" is %s, want a positive integer", r.name, pyRepr(r.args["blocksize"]))
	}
	t.blocksize = int(bs)
	if v := r.args["maxsize"]; v != nil {
		ms, ok := toInt(v)
		if !ok {
			return nil, fmt.Errorf("%s: argument \"maxsize\" is %s, want an integer", r.name, pyRepr(v))
		}
		t.maxsize = ms
	}
	return t, nil
}

// blockLength returns how much to transfer next given how much was
// transferred so far: the block size, or less near maxsize.
func (t *transfer) blockLength(done int64) int {
	n := t.blocksize
	if t.maxsize >= 0 && int64(n) > t.maxsize-done {
		n = int(max(t.maxsize-done, 0))
	}
	return n
}

func (t *transfer) truncated() {
	if t.stderr == "" {
		t.stderr = fmt.Sprintf("Maximum filesize reached, truncating file '%s'", t.path)
		t.rc = 1
	}
}

// interrupted marks an interrupted transfer as failed, as
// TransferCommand.interrupt does, and reports whether it is.
func (t *transfer) interrupted() bool {
	if t.r.interrupted() {
		t.rc = 1
		return true
	}
	return false
}

// finished reports rc, and the error text if any.
func (t *transfer) finished() {
	updates := []Update{{Key: "rc", Value: t.rc}}
	if t.stderr != "" {
		updates = append(updates, Update{Key: "stderr", Value: t.stderr})
	}
	t.r.send(updates...)
}

// runUploadFile sends a file to the master in blocks: "path", "blocksize",
// "maxsize" (nil for no limit), "keepstamp".
func runUploadFile(r *run) error {
	t, err := newTransfer(r)
	if err != nil {
		return err
	}
	keepstamp := r.truthy("keepstamp", false)
	f, err := os.Open(t.path)
	var fi os.FileInfo
	if err == nil {
		fi, err = f.Stat()
		if err == nil && fi.IsDir() {
			err = &fs.PathError{Op: "open", Path: t.path, Err: syscall.EISDIR}
		}
		if err != nil {
			f.Close()
			f = nil
		}
	}
	if err != nil {
		r.log.Debug("upload_file cannot open", "path", t.path, "err", err)
		t.stderr = fmt.Sprintf("Cannot open file '%s' for upload", t.path)
		t.rc = 1
	}
	r.status(Update{Key: "header", Value: fmt.Sprintf("sending %s\n", t.path)})

	if f != nil {
		err = t.upload(f, r.host.UploadFileWrite)
		f.Close()
		if err != nil {
			t.rc = 1
			if cerr := r.host.UploadFileClose(r.hctx); cerr != nil {
				r.log.Debug("upload_file: close after failure", "err", cerr)
			}
			t.finished()
			return err
		}
	}
	err = r.host.UploadFileClose(r.hctx)
	if err == nil && keepstamp && fi != nil {
		err = r.host.UploadFileUtime(r.hctx, accessTime(fi), fi.ModTime())
	}
	t.finished()
	if err != nil {
		return fmt.Errorf("upload_file %s: %w", t.path, err)
	}
	return nil
}

// upload sends what src holds in blocks, up to maxsize.
func (t *transfer) upload(src io.Reader, write func(ctx context.Context, data []byte) error) error {
	buf := make([]byte, t.blocksize)
	var done int64
	for !t.interrupted() {
		n := t.blockLength(done)
		if n <= 0 {
			// At maxsize: truncated only if there is more.
			var one [1]byte
			if k, _ := io.ReadFull(src, one[:]); k > 0 {
				t.truncated()
			}
			return nil
		}
		k, err := io.ReadFull(src, buf[:n])
		if k > 0 {
			if werr := write(t.r.hctx, buf[:k]); werr != nil {
				return werr
			}
			done += int64(k)
		}
		switch {
		case err == io.EOF || err == io.ErrUnexpectedEOF:
			return nil
		case err != nil:
			return fmt.Errorf("read %s: %w", t.path, err)
		}
	}
	return nil
}

// runUploadDirectory sends a folder to the master as a tar archive,
// compressed as "compress" says ("gz", "bz2", anything else for none), in
// blocks, then asks the master to unpack it.
func runUploadDirectory(r *run) error {
	t, err := newTransfer(r)
	if err != nil {
		return err
	}
	compress, _, err := r.str("compress")
	if err != nil {
		return err
	}
	if _, err := os.Lstat(t.path); err != nil {
		return fmt.Errorf("upload_directory: %w", err)
	}
	var bzip2 string
	if compress == "bz2" {
		if bzip2, err = exec.LookPath("bzip2"); err != nil {
			return fmt.Errorf("upload_directory: bz2 compression needs the bzip2 program: %w", err)
		}
	}
	r.status(Update{Key: "header", Value: fmt.Sprintf("sending %s\n", t.path)})

	pr, pw := io.Pipe()
	tarDone := make(chan error, 1)
	go func() {
		err := writeArchive(pw, t.path, compress, bzip2)
		pw.CloseWithError(err)
		tarDone <- err
	}()
	err = t.upload(pr, r.host.UploadDirectoryWrite)
	pr.CloseWithError(errors.New("upload stopped"))
	tarErr := <-tarDone
	if err != nil {
		t.rc = 1
		t.finished()
		return fmt.Errorf("upload_directory %s: %w", t.path, err)
	}
	if tarErr != nil && t.rc == 0 {
		// The archive could not be made: like buildbot-worker, whose
		// tarfile raises, the command fails.
		return fmt.Errorf("upload_directory %s: %w", t.path, tarErr)
	}
	if err := r.host.UploadDirectoryUnpack(r.hctx); err != nil {
		t.rc = 1
		t.finished()
		return fmt.Errorf("upload_directory %s: unpack: %w", t.path, err)
	}
	t.finished()
	return nil
}

// writeArchive writes the tar archive of root to w, as Python's
// tarfile.add(root, arcname="") does: root itself is the entry "", the
// names below are relative to it and sorted, symbolic links are stored
// as links, hard links to a file already stored as hard links.
func writeArchive(w io.Writer, root, compress, bzip2 string) error {
	var cw io.WriteCloser = nopCloser{w}
	switch compress {
	case "gz":
		cw = gzip.NewWriter(w)
	case "bz2":
		bz, err := startBzip2(bzip2, w)
		if err != nil {
			return err
		}
		cw = bz
	}
	tw := tar.NewWriter(cw)
	a := archiver{tw: tw, links: map[fileID]string{}}
	err := a.add(root, "")
	if cerr := tw.Close(); err == nil {
		err = cerr
	}
	if cerr := cw.Close(); err == nil {
		err = cerr
	}
	return err
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

type fileID struct{ dev, ino uint64 }

type archiver struct {
	tw    *tar.Writer
	links map[fileID]string
}

func (a *archiver) add(path, name string) error {
	fi, err := os.Lstat(path)
	if err != nil {
		return err
	}
	var link string
	if fi.Mode()&fs.ModeSymlink != 0 {
		if link, err = os.Readlink(path); err != nil {
			return err
		}
	}
	hdr, err := tar.FileInfoHeader(fi, link)
	if err != nil {
		return nil // a socket: tarfile skips those too
	}
	hdr.Name = name
	if fi.Mode().IsRegular() {
		if id, n, ok := linkInfo(fi); ok && n > 1 {
			if first, seen := a.links[id]; seen {
				hdr.Typeflag, hdr.Linkname, hdr.Size = tar.TypeLink, first, 0
			} else {
				a.links[id] = name
			}
		}
	}
	if err := a.tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("archive %s: %w", path, err)
	}
	switch {
	case hdr.Typeflag == tar.TypeReg:
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		_, err = io.CopyN(a.tw, f, hdr.Size)
		f.Close()
		if err != nil {
			return fmt.Errorf("archive %s: %w", path, err)
		}
	case fi.IsDir():
		entries, err := os.ReadDir(path)
		if err != nil {
			return err
		}
		for _, e := range entries {
			if err := a.add(filepath.Join(path, e.Name()), joinPath(name, e.Name())); err != nil {
				return err
			}
		}
	}
	return nil
}

// bzip2Writer compresses through the bzip2 program.
type bzip2Writer struct {
	io.WriteCloser // the program's input
	cmd            *exec.Cmd
}

func startBzip2(program string, w io.Writer) (*bzip2Writer, error) {
	cmd := exec.Command(program, "-c", "-9")
	cmd.Stdout = w
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start bzip2: %w", err)
	}
	return &bzip2Writer{WriteCloser: in, cmd: cmd}, nil
}

func (b *bzip2Writer) Close() error {
	err := b.WriteCloser.Close()
	if werr := b.cmd.Wait(); werr != nil {
		return fmt.Errorf("bzip2: %w", werr)
	}
	return err
}

// runDownloadFile writes a file the master sends in blocks: "path",
// "blocksize", "maxsize" (nil for no limit), "mode" (nil to leave the
// mode to the umask).
func runDownloadFile(r *run) error {
	t, err := newTransfer(r)
	if err != nil {
		return err
	}
	var mode *int64
	if v := r.args["mode"]; v != nil {
		m, ok := toInt(v)
		if !ok {
			return fmt.Errorf("download_file: argument \"mode\" is %s, want an integer", pyRepr(v))
		}
		mode = &m
	}
	if dir := filepath.Dir(t.path); !exists(dir) {
		if err := mkdirs(dir); err != nil {
			return fmt.Errorf("download_file: %w", err)
		}
	}
	f, err := os.OpenFile(t.path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o666)
	if err == nil && mode != nil {
		if err = os.Chmod(t.path, fileMode(*mode)); err != nil {
			f.Close()
		}
	}
	if err != nil {
		r.log.Debug("download_file cannot open", "path", t.path, "err", err)
		f = nil
		t.stderr = fmt.Sprintf("Cannot open file '%s' for download", t.path)
		t.rc = 1
	}
	var loopErr error
	if f != nil {
		loopErr = t.download(f)
	}
	if err := r.host.ReadFileClose(r.hctx); err != nil {
		r.log.Debug("download_file: close reader", "err", err)
	}
	if f != nil {
		if err := f.Close(); err != nil && loopErr == nil {
			loopErr = fmt.Errorf("write %s: %w", t.path, err)
		}
	}
	t.finished()
	if loopErr != nil {
		return fmt.Errorf("download_file %s: %w", t.path, loopErr)
	}
	return nil
}

func (t *transfer) download(f *os.File) error {
	var done int64
	for !t.interrupted() {
		n := t.blockLength(done)
		if n <= 0 {
			t.truncated()
			return nil
		}
		data, err := t.r.host.ReadFile(t.r.hctx, n)
		if err != nil {
			return err
		}
		if len(data) == 0 {
			return nil
		}
		if len(data) > n {
			return fmt.Errorf("the master sent %d bytes where %d were asked for", len(data), n)
		}
		if _, err := f.Write(data); err != nil {
			return fmt.Errorf("write %s: %w", t.path, err)
		}
		done += int64(len(data))
	}
	return nil
}

// fileMode turns a Unix mode number into an os.FileMode.
func fileMode(m int64) os.FileMode {
	mode := os.FileMode(m & 0o777)
	if m&0o4000 != 0 {
		mode |= os.ModeSetuid
	}
	if m&0o2000 != 0 {
		mode |= os.ModeSetgid
	}
	if m&0o1000 != 0 {
		mode |= os.ModeSticky
	}
	return mode
}
