package command

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"time"

	"github.com/kilnci/kiln/worker/protocol"
)

// Errors Run returns before running anything. A stock worker refuses such
// a start_command with an exception instead of completing it.
var (
	ErrUnknownCommand = errors.New("unrecognized WorkerCommand")
	ErrMissingArgs    = errors.New("missing args")
)

// ErrOutsideBase is wrapped by the error of a command given a path outside
// the worker's base folder (unless Options.Unconfined is set).
var ErrOutsideBase = errors.New("outside the worker's base folder")

// An Update is one key and value a command reports, as in the protocol's
// update op. The package documentation lists the keys and value types.
type Update struct {
	Key   string
	Value any
	// Times holds, for "stdout", "stderr", "header" and "log" updates,
	// the time each line of the text began to arrive: one per line, in
	// order. It is nil for other keys.
	Times []time.Time
}

// A Host is how a running command talks to the master. Its methods are the
// worker-to-master operations of the protocol, and are called in the order
// the command makes them, one at a time (never concurrently), from any
// goroutine. An error from any of them fails the command: Run stops it and
// returns the error.
//
// The data slices passed to the write methods are only valid during the
// call.
type Host interface {
	// Update sends a batch of updates, in order (the update op).
	Update(ctx context.Context, updates []Update) error

	// UploadFileWrite sends the next block of an uploaded file
	// (update_upload_file_write).
	UploadFileWrite(ctx context.Context, data []byte) error
	// UploadFileClose ends a file upload (update_upload_file_close). It is
	// called even when the file could not be read, after which the
	// command reports rc 1.
	UploadFileClose(ctx context.Context) error
	// UploadFileUtime gives the uploaded file's access and modification
	// times (update_upload_file_utime), after UploadFileClose, when the
	// command was asked to keep them ("keepstamp").
	UploadFileUtime(ctx context.Context, access, modified time.Time) error

	// UploadDirectoryWrite sends the next block of the tar archive of an
	// uploaded directory (update_upload_directory_write).
	UploadDirectoryWrite(ctx context.Context, data []byte) error
	// UploadDirectoryUnpack ends a directory upload: the master unpacks
	// the archive (update_upload_directory_unpack).
	UploadDirectoryUnpack(ctx context.Context) error

	// ReadFile returns the next block, at most length bytes, of a file
	// the master sends (update_read_file); an empty block means the end.
	ReadFile(ctx context.Context, length int) ([]byte, error)
	// ReadFileClose ends a download (update_read_file_close).
	ReadFileClose(ctx context.Context) error
}

// Defaults for Options, the values of buildbot-worker and of a stock
// Buildbot master's set_worker_settings.
const (
	DefaultBufferSize    = 64 << 10
	DefaultBufferTimeout = 5 * time.Second
	DefaultMaxLineLength = 4096
	// DefaultNewlineRE is the newline expression Buildbot's master sends:
	// CRLF, a CR not at the end of the received text, cursor moves, clear
	// screen and runs of backspaces all end a line.
	DefaultNewlineRE = `(\r\n|\r(?=.)|\033\[u|\033\[[0-9]+;[0-9]+[Hf]|\033\[2J|\x08+)`
	// DefaultLogfilePoll is how often a shell command's log files are read
	// while it runs (buildbot-worker's LogFileWatcher.POLL_INTERVAL).
	DefaultLogfilePoll = 2 * time.Second
)

// Options are the worker's settings for running commands. A nil *Options
// means the zero Options, and a zero field its default.
type Options struct {
	// BaseDir is the worker's base folder. Relative paths are taken from
	// it and, unless Unconfined, no command may reach outside it. Empty
	// means the current folder.
	BaseDir string
	// Unconfined lets commands use any path. By default paths leading
	// outside BaseDir are refused with an error wrapping ErrOutsideBase.
	Unconfined bool
	// Env is the worker's environment: what shell commands start from and
	// where "${NAME}" in their env values is looked up. Nil means the
	// process environment (os.Environ).
	Env map[string]string

	// BufferSize is how many bytes of updates may wait before they are
	// sent; DefaultBufferSize if zero.
	BufferSize int
	// BufferTimeout is how long an update may wait for others to join its
	// batch; DefaultBufferTimeout if zero. A negative value sends each
	// update as soon as it is made: the in-process worker uses a short
	// timeout or none, so that logs are live.
	BufferTimeout time.Duration
	// MaxLineLength is the longest line sent; longer ones are cut.
	// DefaultMaxLineLength if zero.
	MaxLineLength int
	// NewlineRE is the expression whose matches in the output become line
	// ends, in Python's syntax as the master sends it; DefaultNewlineRE if
	// empty. Other expressions are compiled with Go's regexp package,
	// where a "(?=.)" lookahead is understood as "not at the end of the
	// text received so far".
	NewlineRE string

	// LogfilePoll is how often the log files of a shell command
	// ("logfiles") are read while it runs; DefaultLogfilePoll if zero.
	LogfilePoll time.Duration
	// Logger receives debug messages about the commands; slog.Default()
	// if nil.
	Logger *slog.Logger
	// OnGroup, when set, is told of each shell command's process group:
	// with running true once the command has started, false once it has
	// been waited for. A worker hands them to its guard (see
	// worker.Guard), which kills them if the worker dies first.
	OnGroup func(pgid int, running bool)
}

// implementations of the commands, by wire name and master-side alias.
var commands = map[string]func(*run) error{
	protocol.CmdShell:                 runShell,
	protocol.CmdUploadFile:            runUploadFile,
	protocol.CmdMasterUploadFile:      runUploadFile,
	protocol.CmdUploadDirectory:       runUploadDirectory,
	protocol.CmdMasterUploadDirectory: runUploadDirectory,
	protocol.CmdDownloadFile:          runDownloadFile,
	protocol.CmdMasterDownloadFile:    runDownloadFile,
	protocol.CmdMkdir:                 runMkdir,
	protocol.CmdRmdir:                 runRmdir,
	protocol.CmdCpdir:                 runCpdir,
	protocol.CmdStat:                  runStat,
	protocol.CmdGlob:                  runGlob,
	protocol.CmdListdir:               runListdir,
	protocol.CmdRmfile:                runRmfile,
}

// required lists each command's required arguments, as buildbot-worker
// checks them. (stat and listdir declare theirs under a misspelt name
// there, so a missing "path" fails the command instead.)
var required = map[string][]string{
	protocol.CmdShell:           {"workdir", "command"},
	protocol.CmdUploadFile:      {"path", "blocksize"},
	protocol.CmdUploadDirectory: {"path", "blocksize"},
	protocol.CmdDownloadFile:    {"path", "blocksize"},
	protocol.CmdMkdir:           {"paths"},
	protocol.CmdRmdir:           {"paths"},
	protocol.CmdCpdir:           {"to_path", "from_path"},
	protocol.CmdGlob:            {"path"},
	protocol.CmdRmfile:          {"path"},
}

func init() {
	required[protocol.CmdMasterUploadFile] = required[protocol.CmdUploadFile]
	required[protocol.CmdMasterUploadDirectory] = required[protocol.CmdUploadDirectory]
	required[protocol.CmdMasterDownloadFile] = required[protocol.CmdDownloadFile]
}

// Known reports whether name is a command Run knows, by wire name or
// master-side alias.
func Known(name string) bool {
	_, ok := commands[name]
	return ok
}

// Run runs the named command with its wire arguments, reporting through h,
// and returns when the command is complete: nil when it completed
// normally (whatever its rc), or the failure the protocol's "complete"
// carries. See the package documentation for cancellation, updates and
// paths.
func Run(ctx context.Context, h Host, name string, args map[string]any, opts *Options) error {
	impl, ok := commands[name]
	if !ok {
		return fmt.Errorf("%w '%s'", ErrUnknownCommand, name)
	}
	var missing []string
	for _, arg := range required[name] {
		if _, ok := args[arg]; !ok {
			missing = append(missing, arg)
		}
	}
	if missing != nil {
		return fmt.Errorf("%s: %w: %s", name, ErrMissingArgs, strings.Join(missing, ", "))
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s: interrupted before it started: %w", name, err)
	}
	if opts == nil {
		opts = &Options{}
	}
	r, err := newRun(ctx, h, name, args, opts)
	if err != nil {
		return err
	}
	r.log.Debug("command started", "command", name)
	start := time.Now()
	err = impl(r)
	elapsed := time.Since(start)
	r.status(Update{Key: "elapsed", Value: elapsed.Seconds()})
	r.out.complete()
	if err == nil {
		err = r.out.failure()
	}
	r.log.Debug("command complete", "command", name, "elapsed", elapsed, "err", err)
	return err
}

// A run is one command running.
type run struct {
	ctx  context.Context // cancelled on interrupt
	hctx context.Context // for Host calls: not cancelled on interrupt
	host Host
	name string
	args map[string]any
	opts *Options
	log  *slog.Logger
	out  *output
	env  map[string]string
	base string // absolute, clean

	realBase string // base with its symbolic links resolved; set by resolve
}

func newRun(ctx context.Context, h Host, name string, args map[string]any, opts *Options) (*run, error) {
	r := &run{
		ctx:  ctx,
		hctx: context.WithoutCancel(ctx),
		host: h,
		name: name,
		args: args,
		opts: opts,
		log:  opts.Logger,
		env:  opts.Env,
	}
	if r.log == nil {
		r.log = slog.Default()
	}
	if r.env == nil {
		r.env = Environ()
	}
	base := opts.BaseDir
	if base == "" {
		base = "."
	}
	base, err := filepath.Abs(base)
	if err != nil {
		return nil, fmt.Errorf("%s: worker base folder: %w", name, err)
	}
	r.base = base
	nl, err := newlineFunc(opts.NewlineRE)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	r.out = newOutput(r.hctx, h, outputSettings{
		size:    orDefault(opts.BufferSize, DefaultBufferSize),
		timeout: orDefault(opts.BufferTimeout, DefaultBufferTimeout),
		maxLine: orDefault(opts.MaxLineLength, DefaultMaxLineLength),
		newline: nl,
	})
	return r, nil
}

func orDefault[T int | time.Duration](v, def T) T {
	if v == 0 {
		return def
	}
	return v
}

// interrupted reports whether the master interrupted the command.
func (r *run) interrupted() bool { return r.ctx.Err() != nil }

// send reports updates as RunProcess and the transfer commands do in
// buildbot-worker: even after an interrupt.
func (r *run) send(updates ...Update) { r.out.send(updates...) }

// status reports updates as Command.sendStatus does in buildbot-worker:
// dropped once the command is interrupted (its Command.running is false
// then).
func (r *run) status(updates ...Update) {
	if r.interrupted() {
		return
	}
	r.out.send(updates...)
}
