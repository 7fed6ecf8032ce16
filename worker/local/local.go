package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/kilnci/kiln/ci"
	"github.com/kilnci/kiln/worker/command"
	"github.com/kilnci/kiln/worker/protocol"
)

// DefaultBufferTimeout is how long a command's output may wait to be
// handed to the master with more: short, so that logs are live.
const DefaultBufferTimeout = 10 * time.Millisecond

// interruptGrace bounds how long RunCommand waits for an interrupted
// command to report how it ended: longer than the time command gives a
// process to die after its kill signal.
const interruptGrace = 10 * time.Second

// A Worker is an in-process worker, a ci.Service: Run attaches it to the
// master and serves the master's commands until ctx ends.
//
// The fields are its configuration, read when Run starts. Name and Dir are
// required.
type Worker struct {
	// Name is the worker's name in the master's configuration.
	Name string
	// Dir is the worker's base folder; it is created if missing.
	Dir string
	// Admin and Host describe the worker, as the admin and host files of
	// a buildbot-worker's info folder do. Files in Dir/info are read too;
	// these fields win over them.
	Admin, Host string

	// Env is the environment commands start from; nil means the master's
	// process environment.
	Env map[string]string
	// Unconfined lets commands use paths outside Dir. By default they are
	// refused.
	Unconfined bool
	// BufferTimeout is how long output may wait before it is handed over;
	// DefaultBufferTimeout if zero, no wait at all if negative.
	BufferTimeout time.Duration
	// Logger receives the worker's messages; slog.Default() if nil.
	Logger *slog.Logger
}

var _ ci.Service = (*Worker)(nil)

// Run attaches a connection to m and waits until ctx ends (or the master
// closes the connection), then closes it, interrupting the commands still
// running and waiting for them to end.
func (w *Worker) Run(ctx context.Context, m *ci.Master) error {
	conn, err := w.Conn()
	if err != nil {
		return err
	}
	if err := m.AttachWorker(ctx, conn); err != nil {
		conn.Close()
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("local worker %s: %w", w.Name, err)
	}
	select {
	case <-ctx.Done():
	case <-conn.Done():
	}
	return conn.Close()
}

// Conn returns a new connection to this worker, not attached to any
// master.
func (w *Worker) Conn() (*Conn, error) {
	if w.Name == "" {
		return nil, errors.New("local worker: no name")
	}
	if w.Dir == "" {
		return nil, fmt.Errorf("local worker %s: no folder", w.Name)
	}
	dir, err := filepath.Abs(w.Dir)
	if err != nil {
		return nil, fmt.Errorf("local worker %s: %w", w.Name, err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("local worker %s: %w", w.Name, err)
	}
	env := w.Env
	if env == nil {
		env = command.Environ()
	}
	logger := w.Logger
	if logger == nil {
		logger = slog.Default()
	}
	logger = logger.With("worker", w.Name)
	bt := w.BufferTimeout
	if bt == 0 {
		bt = DefaultBufferTimeout
	}
	c := &Conn{
		name:     w.Name,
		system:   command.System(),
		environ:  env,
		log:      logger,
		builders: map[string]string{},
		done:     make(chan struct{}),
		opts: command.Options{
			BaseDir:       dir,
			Unconfined:    w.Unconfined,
			Env:           env,
			BufferTimeout: bt,
			Logger:        logger,
		},
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.info = command.WorkerInfo(command.HostInfo{BaseDir: dir, Admin: w.Admin, Host: w.Host, Env: env})
	return c, nil
}

// NewConn returns a connection to an in-process worker called name, with
// its base folder dir and default settings.
func NewConn(name, dir string) (*Conn, error) {
	return (&Worker{Name: name, Dir: dir}).Conn()
}

// A Conn is the master's connection to an in-process worker: a
// ci.WorkerConn. It is safe for concurrent use.
type Conn struct {
	name    string
	info    ci.WorkerInfo
	system  string
	environ map[string]string
	opts    command.Options
	log     *slog.Logger

	ctx    context.Context // cancelled by Close: interrupts every command
	cancel context.CancelFunc
	done   chan struct{}
	cmds   sync.WaitGroup // running commands

	mu       sync.Mutex
	builders map[string]string // builder name → its folder
	closed   bool
}

var _ ci.WorkerConn = (*Conn)(nil)

// Name implements ci.WorkerConn.
func (c *Conn) Name() string { return c.name }

// Info implements ci.WorkerConn: what buildbot-worker's get_worker_info
// reports ("basedir", "system", "environ", "numcpus", "version",
// "worker_commands", "admin", "host", the os_* keys...). The caller must
// not modify it.
func (c *Conn) Info() ci.WorkerInfo { return c.info }

// Dir returns the worker's base folder.
func (c *Conn) Dir() string { return c.opts.BaseDir }

// SetBuilders implements ci.WorkerConn: it records the builders' folders
// and creates them, as Buildbot's master has a worker do with mkdir.
func (c *Conn) SetBuilders(ctx context.Context, builders []ci.BuilderDir) error {
	if err := c.lost("set builders"); err != nil {
		return err
	}
	dirs := make(map[string]string, len(builders))
	paths := make([]string, 0, len(builders))
	for _, b := range builders {
		d := protocol.JoinPath(c.system, c.opts.BaseDir, b.Dir)
		dirs[b.Builder] = d
		paths = append(paths, d)
	}
	if len(paths) > 0 {
		h := &silentHost{}
		if err := command.Run(ctx, h, protocol.CmdMkdir, map[string]any{"paths": paths}, &c.opts); err != nil {
			return fmt.Errorf("local worker %s: create builder folders: %w", c.name, err)
		}
		if h.rc != 0 {
			return fmt.Errorf("local worker %s: create builder folders: %s (rc %d)", c.name, strings.TrimSpace(h.header.String()), h.rc)
		}
	}
	c.mu.Lock()
	c.builders = dirs
	c.mu.Unlock()
	return nil
}

// Ping implements ci.WorkerConn.
func (c *Conn) Ping(ctx context.Context) error { return c.lost("ping") }

// Done implements ci.WorkerConn.
func (c *Conn) Done() <-chan struct{} { return c.done }

// Close implements ci.WorkerConn: running commands are interrupted and
// their RunCommand returns an error wrapping ci.ErrWorkerLost. Close
// returns once those commands have ended (their processes killed), so it
// must not be called from a RemoteCommand's OnUpdate.
func (c *Conn) Close() error {
	c.mu.Lock()
	if !c.closed {
		c.closed = true
		close(c.done)
		c.cancel()
	}
	c.mu.Unlock()
	c.cmds.Wait()
	return nil
}

// lost returns an error wrapping ci.ErrWorkerLost once c is closed.
func (c *Conn) lost(doing string) error {
	select {
	case <-c.done:
		return fmt.Errorf("local worker %s: %s: %w", c.name, doing, ci.ErrWorkerLost)
	default:
		return nil
	}
}

// RunCommand implements ci.WorkerConn: it translates cmd into the wire
// form (protocol.TranslateArgs) and runs it with package command. Updates
// and transfers reach cmd in order, from the calling goroutine.
//
// When ctx ends, the command is interrupted, and RunCommand waits (up to
// 10 s) for it to report how it ended. A failure of the command itself is
// a *ci.CommandError.
func (c *Conn) RunCommand(ctx context.Context, builder string, cmd *ci.RemoteCommand) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return fmt.Errorf("local worker %s: run %s: %w", c.name, cmd.Name, ci.ErrWorkerLost)
	}
	dir, ok := c.builders[builder]
	if !ok {
		c.mu.Unlock()
		return fmt.Errorf("local worker %s: run %s: builder %q is not set up on this worker", c.name, cmd.Name, builder)
	}
	c.cmds.Add(1)
	c.mu.Unlock()

	name, args, err := protocol.TranslateArgs(cmd.Name, cmd.Args, protocol.Target{BuilderDir: dir, System: c.system, Environ: c.environ})
	if err != nil {
		c.cmds.Done()
		return fmt.Errorf("local worker %s: %w", c.name, err)
	}
	cctx, interrupt := context.WithCancel(c.ctx)
	defer interrupt()
	h := &host{c: c, cmd: cmd, calls: make(chan func() error), reply: make(chan error, 1), gone: make(chan struct{})}
	defer close(h.gone)
	result := make(chan error, 1)
	go func() {
		defer c.cmds.Done()
		result <- command.Run(cctx, h, name, args, &c.opts)
	}()

	ctxDone := ctx.Done()
	var grace <-chan time.Time
	for {
		select {
		case fn := <-h.calls:
			h.reply <- fn()
		case err := <-result:
			switch {
			case err == nil:
				return nil
			case errors.Is(err, ci.ErrWorkerLost):
				return err
			}
			return &ci.CommandError{Command: cmd.Name, Message: err.Error()}
		case <-ctxDone:
			ctxDone = nil
			interrupt()
			t := time.NewTimer(interruptGrace)
			defer t.Stop()
			grace = t.C
		case <-grace:
			c.log.Warn("interrupted command did not complete", "command", cmd.Name, "builder", builder)
			return ctx.Err()
		case <-c.done:
			return fmt.Errorf("local worker %s: run %s: %w", c.name, cmd.Name, ci.ErrWorkerLost)
		}
	}
}

// host hands a running command's calls to the goroutine in RunCommand,
// which applies them to the ci.RemoteCommand.
type host struct {
	c     *Conn
	cmd   *ci.RemoteCommand
	calls chan func() error
	reply chan error    // one call at a time: command calls its Host so
	gone  chan struct{} // closed when RunCommand has returned
}

var _ command.Host = (*host)(nil)

func (h *host) do(fn func() error) error {
	select {
	case h.calls <- fn:
		return <-h.reply
	case <-h.gone:
		return fmt.Errorf("local worker %s: %w", h.c.name, ci.ErrWorkerLost)
	}
}

func (h *host) Update(ctx context.Context, updates []command.Update) error {
	return h.do(func() error {
		for _, u := range updates {
			h.cmd.Update(u.Key, u.Value)
		}
		return nil
	})
}

func (h *host) upload() (ci.FileWriter, error) {
	if h.cmd.Upload == nil {
		return nil, errors.New("the master has no writer for this upload")
	}
	return h.cmd.Upload, nil
}

func (h *host) UploadFileWrite(ctx context.Context, data []byte) error {
	return h.do(func() error {
		w, err := h.upload()
		if err != nil {
			return err
		}
		_, err = w.Write(data)
		return err
	})
}

func (h *host) UploadFileClose(ctx context.Context) error {
	return h.do(func() error {
		w, err := h.upload()
		if err != nil {
			return err
		}
		return w.Close()
	})
}

func (h *host) UploadFileUtime(ctx context.Context, access, modified time.Time) error {
	return h.do(func() error {
		w, err := h.upload()
		if err != nil {
			return err
		}
		return w.Utime(access, modified)
	})
}

func (h *host) UploadDirectoryWrite(ctx context.Context, data []byte) error {
	return h.UploadFileWrite(ctx, data)
}

// UploadDirectoryUnpack calls Unpack; the step that owns the writer closes
// it, as Buildbot's DirectoryWriter closes itself when it unpacks.
func (h *host) UploadDirectoryUnpack(ctx context.Context) error {
	return h.do(func() error {
		w, err := h.upload()
		if err != nil {
			return err
		}
		return w.Unpack()
	})
}

func (h *host) ReadFile(ctx context.Context, length int) ([]byte, error) {
	var data []byte
	err := h.do(func() error {
		if h.cmd.Download == nil {
			return errors.New("the master has no file for this download")
		}
		buf := make([]byte, length)
		n, err := io.ReadFull(h.cmd.Download, buf)
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			err = nil
		}
		data = buf[:n]
		return err
	})
	return data, err
}

func (h *host) ReadFileClose(ctx context.Context) error {
	return h.do(func() error {
		if h.cmd.Download == nil {
			return nil
		}
		return h.cmd.Download.Close()
	})
}

// silentHost keeps the rc and header of a command run for the worker's own
// needs.
type silentHost struct {
	rc     int
	header strings.Builder
}

func (h *silentHost) Update(ctx context.Context, updates []command.Update) error {
	for _, u := range updates {
		switch u.Key {
		case "rc":
			h.rc, _ = u.Value.(int)
		case "header":
			s, _ := u.Value.(string)
			h.header.WriteString(s)
		}
	}
	return nil
}

var errNoTransfer = errors.New("no transfer here")

func (h *silentHost) UploadFileWrite(context.Context, []byte) error { return errNoTransfer }
func (h *silentHost) UploadFileClose(context.Context) error         { return errNoTransfer }
func (h *silentHost) UploadFileUtime(context.Context, time.Time, time.Time) error {
	return errNoTransfer
}
func (h *silentHost) UploadDirectoryWrite(context.Context, []byte) error { return errNoTransfer }
func (h *silentHost) UploadDirectoryUnpack(context.Context) error        { return errNoTransfer }
func (h *silentHost) ReadFile(context.Context, int) ([]byte, error)      { return nil, errNoTransfer }
func (h *silentHost) ReadFileClose(context.Context) error                { return errNoTransfer }
