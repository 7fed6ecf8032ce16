package ci

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
	"time"

	"github.com/kilnci/kiln/internal/secretname"
)

// ErrWorkerLost is returned by a WorkerConn whose worker went away: the
// connection broke, missed its keepalives, or was closed. A build that gets
// it ends with RETRY and its request is built again.
var ErrWorkerLost = errors.New("worker lost")

// A CommandError is a remote command's own failure, as the worker reported it
// when completing the command (Buildbot's 'complete' with a failure): a
// missing argument, an unknown command, a file that could not be opened.
// A shell command that runs and exits non-zero is not a CommandError: its
// exit code arrives as the "rc" update.
type CommandError struct {
	Command string
	Message string
}

func (e *CommandError) Error() string {
	return fmt.Sprintf("remote command %s failed: %s", e.Command, e.Message)
}

// A WorkerConn is the master's connection to one attached worker: a worker
// on another machine speaking the worker protocol, or an in-process worker.
// Builds reach the worker only through it.
//
// The master calls SetBuilders once, after the connection is attached and
// before any RunCommand; RunCommand and Ping may then be called concurrently
// from several builds. Implementations translate the commands' arguments
// (given in Buildbot's master-side form, with paths relative to the builder's
// folder) into what the worker expects.
type WorkerConn interface {
	// Name returns the worker's name.
	Name() string
	// Info returns what the worker said of itself when it connected. It does
	// not change while the connection lasts.
	Info() WorkerInfo
	// SetBuilders tells the worker which builders it serves and the folder of
	// each, relative to the worker's base folder; the worker creates them.
	SetBuilders(ctx context.Context, builders []BuilderDir) error
	// Ping checks that the worker answers. The master pings before a build.
	Ping(ctx context.Context) error
	// RunCommand runs cmd on the worker for the named builder and returns
	// when the worker reports the command complete. Updates and file
	// transfers are delivered to cmd's fields as they arrive, from one
	// goroutine at a time. When ctx ends first, the command is interrupted
	// and RunCommand still waits (for a bounded time) for the worker to
	// complete it, so that its last output and exit code are recorded; it
	// then returns ctx's error if the worker did not report completion. A
	// ctx already done runs nothing and returns its error. It returns a
	// *CommandError if the worker completed the command with a failure, and
	// an error wrapping ErrWorkerLost if the connection is lost.
	RunCommand(ctx context.Context, builder string, cmd *RemoteCommand) error
	// Done is closed when the connection is lost or closed.
	Done() <-chan struct{}
	// Close disconnects the worker. Running commands fail with
	// ErrWorkerLost.
	Close() error
}

// A DoneNotifier is a WorkerConn that can call a function once it ends,
// so that the master need not wait on Done in a goroutine of its own for
// each attached worker: an idle worker then costs the master no goroutine
// (and no goroutine stack) in the core.
type DoneNotifier interface {
	WorkerConn
	// AfterDone arranges for f to run in a goroutine of its own once Done
	// is closed (at once if it is). stop unregisters f and reports whether
	// that kept f from running, as context.AfterFunc's stop does.
	AfterDone(f func()) (stop func() bool)
}

// A SilenceWatcher is a WorkerConn that watches its worker's liveness. A
// worker that stops answering (a cut network, a frozen machine) is
// declared lost once a grace period has passed without a word from it;
// the builds it was running then end as RETRY and are built again. The
// master shows such a worker, and the builds waiting on it, with the time
// they will be given up (Master.Workers, the web UI and its API).
type SilenceWatcher interface {
	// Silence reports whether the worker is silent, having missed an
	// answer it owed; if so, since when nothing has been heard from it,
	// and when it will be declared lost if it stays silent.
	Silence() (silent bool, since, lostAt time.Time)
}

// A HeardReporter is a WorkerConn that knows when it last heard from its
// worker, on the master's clock. The master does not ping a worker before
// a build when it heard from it less than PingQuiet ago: the worker has
// just shown that it answers.
type HeardReporter interface {
	// LastHeard returns when the worker last sent something.
	LastHeard() time.Time
}

// PingQuiet is how long a worker must have been quiet for the master to
// ping it before a build. Buildbot's master pings before every build;
// builds one after another on a worker skip that round trip.
const PingQuiet = time.Second

// A BuilderDir names a builder a worker serves and its folder on the worker.
type BuilderDir struct {
	Builder string
	Dir     string
}

// WorkerInfo is what a worker reports of itself (Buildbot's get_worker_info):
// "admin", "host", "basedir", "system", "environ", "numcpus", "version",
// "worker_commands" and the os_* keys, among others.
type WorkerInfo map[string]any

// Basedir returns the worker's base folder.
func (w WorkerInfo) Basedir() string { s, _ := w["basedir"].(string); return s }

// System returns the worker's os.name: "posix" or "nt".
func (w WorkerInfo) System() string { s, _ := w["system"].(string); return s }

// Environ returns the worker's environment.
func (w WorkerInfo) Environ() map[string]string {
	env := map[string]string{}
	if m, ok := w["environ"].(map[string]any); ok {
		for k, v := range m {
			if s, ok := v.(string); ok {
				env[k] = s
			}
		}
	}
	if m, ok := w["environ"].(map[string]string); ok {
		for k, v := range m {
			env[k] = v
		}
	}
	return env
}

// JoinPath joins path elements the way the worker's system does.
func (w WorkerInfo) JoinPath(elem ...string) string {
	if w.System() == "nt" {
		var parts []string
		for _, e := range elem {
			if e == "" {
				continue
			}
			if len(e) >= 2 && e[1] == ':' || strings.HasPrefix(e, `\`) {
				parts = parts[:0]
			}
			parts = append(parts, strings.TrimRight(e, `\/`))
		}
		return strings.Join(parts, `\`)
	}
	var parts []string
	for _, e := range elem {
		if strings.HasPrefix(e, "/") {
			parts = parts[:0]
		}
		parts = append(parts, e)
	}
	return path.Join(parts...)
}

// The update keys a RemoteCommand handles itself.
const (
	UpdateStdout = "stdout" // string: output of the command
	UpdateStderr = "stderr" // string: error output of the command
	UpdateHeader = "header" // string: what the worker says about the command
	UpdateLog    = "log"    // [2]string{log file name, text}
	UpdateRC     = "rc"     // int: exit code; negative for a signal
)

// streamLetter gives the letter a stream log stores before each line of an
// update key's text.
var streamLetter = map[string]byte{UpdateStdout: 'o', UpdateStderr: 'e', UpdateHeader: 'h'}

// A RemoteCommand is one command a step sends to a worker: Buildbot's
// command names ("shell", "uploadFile", "downloadFile", "uploadDirectory",
// "mkdir", "rmdir", "cpdir", "stat", "glob", "listdir", "rmfile") and
// master-side arguments. Set the fields, pass it to StepRun.RunCommand (or
// WorkerConn.RunCommand), then read RC and Updates.
//
// A RemoteCommand is used once.
type RemoteCommand struct {
	// Name is the command, as above.
	Name string
	// Args are the command's arguments in Buildbot's master-side form:
	// paths relative to the builder's folder ("workdir", "dir", "workersrc",
	// "workerdest", ...).
	Args map[string]any

	// Stdio receives the stdout, stderr and header updates; nil discards
	// them.
	Stdio *LogWriter
	// Logs receives the text of the command's extra log files, by name.
	Logs map[string]*LogWriter
	// Upload receives the data of uploadFile and uploadDirectory.
	Upload FileWriter
	// Download supplies the data of downloadFile. The connection closes it
	// when the worker has read what it wants (update_read_file_close); the
	// step may close it again.
	Download io.ReadCloser
	// OnUpdate, when set, is called for every update after it is handled.
	OnUpdate func(key string, value any)

	// RC is the exit code the worker reported; -1 until it does.
	RC int
	// Updates holds the last value of each update key other than stdout,
	// stderr, header and log ("files", "stat", "elapsed", ...).
	Updates map[string]any
}

// Update handles one update from the worker. WorkerConn implementations
// call it, in order, from one goroutine; values are of the types listed
// with the Update* keys.
func (c *RemoteCommand) Update(key string, value any) {
	switch key {
	case UpdateStdout, UpdateStderr, UpdateHeader:
		s, _ := value.(string)
		if key == UpdateHeader {
			s = MaskEnviron(s)
		}
		if c.Stdio != nil && s != "" {
			c.Stdio.addStream(streamLetter[key], s)
		}
	case UpdateLog:
		if lv, ok := value.([2]string); ok {
			if w := c.Logs[lv[0]]; w != nil {
				w.addStream('o', lv[1])
			}
		}
	default:
		if key == UpdateRC {
			c.RC = toInt(value)
		}
		if c.Updates == nil {
			c.Updates = map[string]any{}
		}
		c.Updates[key] = value
	}
	if c.OnUpdate != nil {
		c.OnUpdate(key, value)
	}
}

// MaskEnviron replaces, in header text, the values of the environment
// variables whose names say they hold a secret (*TOKEN*, *SECRET*,
// *PASSWORD*, *KEY*, *CREDENTIAL*) with "***": whichever worker wrote the
// header (kiln-worker masks them itself; buildbot-worker does not). A line
// of the environment is two spaces, NAME=value, NAME a letter or '_' then
// letters, digits or '_'. Every shell command's header has one, so it is
// read without a copy when nothing is masked.
func MaskEnviron(header string) string {
	if !strings.Contains(header, "=") {
		return header
	}
	var b strings.Builder
	done := 0 // header[:done] is in b
	for rest, at := header, 0; rest != ""; {
		line, next, _ := strings.Cut(rest, "\n")
		if name, ok := environName(line); ok && line[len(name)+3:] != "***" && secretname.Is(name) {
			if b.Len() == 0 {
				b.Grow(len(header))
			}
			end := at + len(name) + 3 // two spaces, the name, '='
			b.WriteString(header[done:end])
			b.WriteString("***")
			done = at + len(line)
		}
		at += len(line) + 1
		rest = next
	}
	if done == 0 {
		return header
	}
	b.WriteString(header[done:])
	return b.String()
}

// environName returns the variable's name if line is a line of an
// environment: two spaces, the name, '=', the value.
func environName(line string) (string, bool) {
	if len(line) < 4 || line[0] != ' ' || line[1] != ' ' {
		return "", false
	}
	for i := 2; i < len(line); i++ {
		c := line[i]
		switch {
		case c == '=' && i > 2:
			return line[2:i], true
		case c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z':
		case '0' <= c && c <= '9' && i > 2:
		default:
			return "", false
		}
	}
	return "", false
}

func toInt(v any) int {
	switch x := v.(type) {
	case int:
		return x
	case int8:
		return int(x)
	case int16:
		return int(x)
	case int32:
		return int(x)
	case int64:
		return int(x)
	case uint8:
		return int(x)
	case uint16:
		return int(x)
	case uint32:
		return int(x)
	case uint64:
		return int(x)
	case float64:
		return int(x)
	}
	return -1
}

// A FileWriter receives a file or directory a worker uploads to the master.
// For uploadFile the connection calls Write for each block
// (update_upload_file_write), then Close (update_upload_file_close), then
// Utime if the worker keeps timestamps. For uploadDirectory it calls Write
// for each block of the tar archive (update_upload_directory_write), then
// Unpack (update_upload_directory_unpack), and never Close: the step that
// made the writer closes it. Implementations may return an error from an
// operation they do not support; the worker then fails the command.
type FileWriter interface {
	io.Writer
	Utime(access, modified time.Time) error
	Unpack() error
	Close() error
}
