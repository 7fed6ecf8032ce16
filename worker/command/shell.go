package command

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/kilnci/kiln/internal/pyvalue"
	"github.com/kilnci/kiln/internal/secretname"
)

// backupTimeout is how long a killed command may take to end before the
// worker gives up on it (buildbot-worker's RunProcess.BACKUP_TIMEOUT). A
// variable for tests.
var backupTimeout = 5 * time.Second

// A shell is one shell command: buildbot-worker's WorkerShellCommand and
// RunProcess.
type shell struct {
	r *run

	workdirArg string // as given, for the header
	workdir    string // resolved
	argv       []string
	display    string // the command as a shell would read it (first header line)
	fake       string // Python's repr of the command with secrets hidden
	env        map[string]string

	sendStdout, sendStderr bool
	timeout, maxTime       number // zero: none
	sigtermTime            *number
	interruptName          string
	interruptSignal        syscall.Signal
	stdin                  []byte
	usePTY, logEnviron     bool
	logfilesRepr           string
	watchers               []*logWatcher

	cmd        *exec.Cmd
	start      time.Time
	lastOutput atomic.Int64 // nanoseconds after start
	killed     bool

	// timers, nil when not running
	ioTimer, maxTimer, sigtermTimer, backupTimer *time.Timer
}

func runShell(r *run) error {
	sh, err := newShell(r)
	if err != nil {
		return err
	}
	return sh.run()
}

func newShell(r *run) (*shell, error) {
	sh := &shell{r: r}
	var err error
	sh.workdirArg, _, err = r.str("workdir")
	if err != nil {
		return nil, err
	}
	if sh.workdir, err = r.path("workdir"); err != nil {
		return nil, err
	}
	if err := sh.parseCommand(r.args["command"]); err != nil {
		return nil, err
	}
	if sh.env, err = shellEnv(r.args["env"], r.env); err != nil {
		return nil, fmt.Errorf("shell: %w", err)
	}
	if sh.env["MACHTYPE"] != "i686-pc-msys" {
		sh.env["PWD"] = filepath.Clean(sh.workdir)
	}
	if n, ok, err := r.number("timeout"); err != nil {
		return nil, err
	} else if ok {
		sh.timeout = n
	}
	if n, ok, err := r.number("maxTime"); err != nil {
		return nil, err
	} else if ok {
		sh.maxTime = n
	}
	if n, ok, err := r.number("sigtermTime"); err != nil {
		return nil, err
	} else if ok {
		sh.sigtermTime = &n
	}
	sh.interruptName, sh.interruptSignal = "KILL", syscall.SIGKILL
	if v := r.args["interruptSignal"]; pyvalue.Truthy(v) {
		name, ok := v.(string)
		sig, known := signalByName(name)
		if !ok || !known {
			return nil, fmt.Errorf("shell: unknown interruptSignal %s", pyRepr(v))
		}
		sh.interruptName, sh.interruptSignal = strings.TrimPrefix(name, "SIG"), sig
	}
	sh.sendStdout = r.truthy("want_stdout", true)
	sh.sendStderr = r.truthy("want_stderr", true)
	sh.usePTY = r.truthy("usePTY", false)
	sh.logEnviron = r.truthy("logEnviron", true)
	if s, _, err := r.str("initial_stdin"); err != nil {
		return nil, err
	} else {
		sh.stdin = []byte(s)
	}
	if err := sh.parseLogfiles(r.args["logfiles"]); err != nil {
		return nil, err
	}
	return sh, nil
}

// parseCommand reads "command": an argv list, whose items may be
// ["obfuscated", real, shown] to keep a secret out of the headers, or a
// string run with /bin/sh -c.
func (sh *shell) parseCommand(v any) error {
	switch x := v.(type) {
	case string:
		sh.argv = []string{"/bin/sh", "-c", x}
		sh.display, sh.fake = x, pyBytes([]byte(x))
		return nil
	case []byte:
		return sh.parseCommand(string(x))
	case []string:
		items := make([]any, len(x))
		for i, s := range x {
			items[i] = s
		}
		return sh.parseCommand(items)
	case []any:
		if len(x) == 0 {
			return errors.New("shell: command is empty")
		}
		real := make([]string, len(x))
		shown := make([]string, len(x))
		for i, item := range x {
			switch it := item.(type) {
			case string:
				real[i], shown[i] = it, it
			case []byte:
				real[i], shown[i] = string(it), string(it)
			case []any:
				r, ok1 := stringOf(it, 1)
				f, ok2 := stringOf(it, 2)
				if len(it) != 3 || it[0] != "obfuscated" || !ok1 || !ok2 {
					return fmt.Errorf("shell: command[%d] is %s, want a string", i, pyRepr(it))
				}
				real[i], shown[i] = r, f
			default:
				return fmt.Errorf("shell: command[%d] is %T, want a string", i, item)
			}
		}
		sh.argv = real
		sh.display, sh.fake = shellQuote(shown), pyBytesList(shown)
		return nil
	case nil:
		return errors.New("shell: command is None")
	}
	return fmt.Errorf("shell: command is %T, want a list or a string", v)
}

func stringOf(list []any, i int) (string, bool) {
	if i >= len(list) {
		return "", false
	}
	s, ok := list[i].(string)
	return s, ok
}

// shellEnv builds a shell command's environment from the worker's, as
// RunProcess does: list values are joined with ":", None removes a
// variable, "${NAME}" is replaced by the worker's NAME, and PYTHONPATH
// keeps the worker's after the one given.
func shellEnv(arg any, worker map[string]string) (map[string]string, error) {
	env := maps.Clone(worker)
	if env == nil {
		env = map[string]string{}
	}
	if !pyvalue.Truthy(arg) {
		return env, nil
	}
	var given map[string]any
	switch x := arg.(type) {
	case map[string]any:
		given = x
	case map[string]string:
		given = make(map[string]any, len(x))
		for k, v := range x {
			given[k] = v
		}
	default:
		return nil, fmt.Errorf("'env' is %T, want a dict", arg)
	}
	values := make(map[string]string, len(given))
	for k, v := range given {
		switch x := v.(type) {
		case nil:
			delete(env, k)
			continue
		case string:
			values[k] = x
		case []byte:
			values[k] = string(x)
		case []string:
			values[k] = strings.Join(x, string(os.PathListSeparator))
		case []any:
			parts := make([]string, len(x))
			for i, e := range x {
				s, ok := e.(string)
				if !ok {
					return nil, fmt.Errorf("'env' list values must be strings; key '%s' is incorrect", k)
				}
				parts[i] = s
			}
			values[k] = strings.Join(parts, string(os.PathListSeparator))
		default:
			return nil, fmt.Errorf("'env' values must be strings or lists; key '%s' is incorrect", k)
		}
	}
	if p, ok := values["PYTHONPATH"]; ok {
		values["PYTHONPATH"] = p + string(os.PathListSeparator) + "${PYTHONPATH}"
	}
	for k, v := range values {
		env[k] = expandEnv(v, worker)
	}
	return env, nil
}

// expandEnv replaces ${NAME} (NAME of [0-9a-zA-Z_]) with the worker's
// variable, or "" when it has none.
func expandEnv(s string, worker map[string]string) string {
	if !strings.Contains(s, "${") {
		return s
	}
	var b strings.Builder
	for {
		i := strings.Index(s, "${")
		if i < 0 {
			b.WriteString(s)
			return b.String()
		}
		j := i + 2
		for j < len(s) && isNameByte(s[j]) {
			j++
		}
		if j == len(s) || s[j] != '}' {
			b.WriteString(s[:i+2])
			s = s[i+2:]
			continue
		}
		b.WriteString(s[:i])
		b.WriteString(worker[s[i+2:j]])
		s = s[j+1:]
	}
}

func isNameByte(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_'
}

// parseLogfiles reads "logfiles": log name → file name, or → {"filename":
// name, "follow": bool}; file names are taken from the workdir.
func (sh *shell) parseLogfiles(v any) error {
	if v == nil {
		sh.logfilesRepr = "{}"
		return nil
	}
	m, ok := v.(map[string]any)
	if !ok {
		return fmt.Errorf("shell: logfiles is %T, want a dict", v)
	}
	sh.logfilesRepr = pyRepr(m)
	for _, name := range slices.Sorted(maps.Keys(m)) {
		w := &logWatcher{name: name}
		var filename string
		switch x := m[name].(type) {
		case string:
			filename = x
		case map[string]any:
			f, ok := x["filename"].(string)
			if !ok {
				return fmt.Errorf("shell: logfiles[%s] has no filename", pyStr(name))
			}
			filename = f
			w.follow = pyvalue.Truthy(x["follow"])
		default:
			return fmt.Errorf("shell: logfiles[%s] is %T, want a file name", pyStr(name), m[name])
		}
		path := filename
		if !filepath.IsAbs(path) {
			path = filepath.Join(sh.workdir, filename)
		}
		p, err := sh.r.resolve(path)
		if err != nil {
			return err
		}
		w.path = p
		w.old = statLog(p)
		sh.watchers = append(sh.watchers, w)
	}
	return nil
}

func (sh *shell) header(s string) { sh.r.send(Update{Key: "header", Value: s}) }

func (sh *shell) run() error {
	r := sh.r
	var ptyController, ptyTerminal *os.File
	if sh.usePTY {
		var err error
		if ptyController, ptyTerminal, err = openPTY(); err != nil {
			r.log.Debug("shell command without a PTY", "err", err)
			sh.header("WARNING: disabling usePTY for this command\n")
			sh.usePTY = false
		} else {
			defer ptyController.Close()
			defer ptyTerminal.Close()
		}
	}
	mkErr := makedirs(sh.workdir)

	sh.header(sh.display + "\n")
	msg := " in dir " + sh.workdirArg
	if sh.timeout.f != 0 {
		msg += fmt.Sprintf(" (timeout %s %s)", sh.timeout, secs(sh.timeout))
	}
	if sh.maxTime.f != 0 {
		msg += fmt.Sprintf(" (maxTime %s %s)", sh.maxTime, secs(sh.maxTime))
	}
	sh.header(msg + "\n")
	sh.header(" watching logfiles " + sh.logfilesRepr + "\n")
	sh.header(" argv: " + sh.fake + "\n")
	if sh.logEnviron {
		var b strings.Builder
		b.WriteString(" environment:\n")
		for _, k := range slices.Sorted(maps.Keys(sh.env)) {
			b.WriteString("  ")
			b.WriteString(k)
			b.WriteByte('=')
			if secretname.Is(k) {
				// The value is not the log's to show.
				b.WriteString("***")
			} else {
				b.WriteString(sh.env[k])
			}
			b.WriteByte('\n')
		}
		sh.header(b.String())
	}
	if len(sh.stdin) > 0 {
		sh.header(fmt.Sprintf(" writing %d bytes to stdin\n", len(sh.stdin)))
	}
	if sh.usePTY {
		sh.header(" using PTY: True\n")
	} else {
		sh.header(" using PTY: False\n")
	}

	if err := r.out.failure(); err != nil {
		return err // the master is gone: start nothing
	}
	sh.start = time.Now()
	if mkErr != nil {
		return sh.startFailed(fmt.Errorf("cannot create workdir: %w", mkErr))
	}
	path, err := lookPath(sh.argv[0], sh.env["PATH"], sh.workdir)
	if err != nil {
		return sh.startFailed(err)
	}
	env := make([]string, 0, len(sh.env))
	for k, v := range sh.env {
		env = append(env, k+"="+v)
	}
	sh.cmd = &exec.Cmd{
		Path:        path,
		Args:        sh.argv,
		Env:         env,
		Dir:         sh.workdir,
		SysProcAttr: sysProcAttr(),
	}
	if sh.usePTY {
		return sh.runOnPTY(ptyController, ptyTerminal)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		return sh.startFailed(err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return sh.startFailed(err)
	}
	sh.cmd.Stdout, sh.cmd.Stderr = outW, errW
	var stdinR, stdinW *os.File
	if len(sh.stdin) > 0 {
		if stdinR, stdinW, err = os.Pipe(); err != nil {
			outR.Close()
			outW.Close()
			errR.Close()
			errW.Close()
			return sh.startFailed(err)
		}
		sh.cmd.Stdin = stdinR
	}
	sh.start = time.Now()
	err = sh.cmd.Start()
	// The command has its own copies of these ends now.
	outW.Close()
	errW.Close()
	if stdinR != nil {
		stdinR.Close()
	}
	if err != nil {
		outR.Close()
		errR.Close()
		if stdinW != nil {
			stdinW.Close()
		}
		return sh.startFailed(err)
	}
	r.log.Debug("shell command started", "pid", sh.cmd.Process.Pid, "argv", sh.argv, "workdir", sh.workdir)
	sh.started()
	if stdinW != nil {
		go func() {
			stdinW.Write(sh.stdin) // an early exit of the command is fine
			stdinW.Close()
		}()
	}
	return sh.wait(outR, errR)
}

// runOnPTY starts the command with terminal as its standard input,
// output and error, and follows it reading controller: its output is all
// stdout, with the terminal's line endings (\r\n), and its initial stdin
// is typed in.
func (sh *shell) runOnPTY(controller, terminal *os.File) error {
	sh.cmd.SysProcAttr = ptyProcAttr()
	sh.cmd.Stdin, sh.cmd.Stdout, sh.cmd.Stderr = terminal, terminal, terminal
	sh.start = time.Now()
	err := sh.cmd.Start()
	terminal.Close() // the command has its own copy; reads end with its last holder
	if err != nil {
		return sh.startFailed(err)
	}
	sh.r.log.Debug("shell command started on a PTY", "pid", sh.cmd.Process.Pid, "argv", sh.argv, "workdir", sh.workdir)
	sh.started()
	if len(sh.stdin) > 0 {
		go controller.Write(sh.stdin) // an early exit of the command is fine
	}
	return sh.wait(controller, nil)
}

func secs(n number) string {
	if n.f == 1 {
		return "sec"
	}
	return "secs"
}

// startFailed reports a command that could not start as one that exited
// with 1, the reason on stderr.
func (sh *shell) startFailed(err error) error {
	sh.r.log.Debug("shell command could not start", "err", err)
	sh.r.send(Update{Key: "stderr", Value: err.Error() + "\n"})
	sh.finished(1, 0)
	return nil
}

// wait follows the running command to its end: output, timeouts,
// interrupt, log files.
// started tells the worker of the command's process group, which the
// command leads.
func (sh *shell) started() {
	if f := sh.r.opts.OnGroup; f != nil {
		f(sh.cmd.Process.Pid, true)
	}
}

func (sh *shell) wait(outR, errR *os.File) error {
	r := sh.r
	readDone := make(chan struct{}, 2)
	readers := 1
	go sh.read(outR, "stdout", sh.sendStdout, readDone)
	if errR != nil { // nil on a PTY
		readers++
		go sh.read(errR, "stderr", sh.sendStderr, readDone)
	}
	exited := make(chan struct{})
	go func() {
		sh.cmd.Wait() // the state is in sh.cmd.ProcessState
		if f := r.opts.OnGroup; f != nil {
			f(sh.cmd.Process.Pid, false)
		}
		close(exited)
	}()
	if sh.timeout.f != 0 {
		sh.ioTimer = time.NewTimer(sh.timeout.duration())
	}
	if sh.maxTime.f != 0 {
		sh.maxTimer = time.NewTimer(sh.maxTime.duration())
	}
	var poll <-chan time.Time
	if len(sh.watchers) > 0 {
		sh.pollLogfiles()
		t := time.NewTicker(orDefault(r.opts.LogfilePoll, DefaultLogfilePoll))
		defer t.Stop()
		poll = t.C
	}
	defer sh.stopTimers()

	interrupt := r.ctx.Done()
	hostFailed := r.out.failed
	for exited != nil || readers > 0 {
		select {
		case <-exited:
			exited = nil
		case <-readDone:
			readers--
		case <-interrupt:
			interrupt = nil
			r.out.flush()
			sh.kill("command interrupted")
		case <-hostFailed:
			// Nothing more can be reported: stop the command, as
			// buildbot-worker does when it loses its master.
			hostFailed = nil
			sh.kill("lost the master")
		case <-timerC(sh.ioTimer):
			idle := time.Since(sh.start) - time.Duration(sh.lastOutput.Load())
			if left := sh.timeout.duration() - idle; left > 0 {
				sh.ioTimer.Reset(left)
				continue
			}
			sh.ioTimer = nil
			sh.kill(fmt.Sprintf("command timed out: %s seconds without output running %s", sh.timeout, sh.fake))
		case <-timerC(sh.maxTimer):
			sh.maxTimer = nil
			sh.kill(fmt.Sprintf("command timed out: %s seconds elapsed running %s", sh.maxTime, sh.fake))
		case <-timerC(sh.sigtermTimer):
			sh.sigtermTimer = nil
			if exited != nil {
				sh.signal(sh.interruptSignal)
			}
			sh.backupTimer = time.NewTimer(backupTimeout)
		case <-timerC(sh.backupTimer):
			sh.backupTimer = nil
			if exited != nil {
				return sh.abandon()
			}
			// The process is gone but something it started, outside its
			// process group, still holds the output open: stop reading,
			// as buildbot-worker does once it has killed a command.
			outR.Close()
			errR.Close()
		case <-poll:
			sh.pollLogfiles()
		}
	}
	outR.Close()
	errR.Close()
	sig := 0
	code := sh.cmd.ProcessState.ExitCode()
	if ws, ok := sh.cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		sig = int(ws.Signal())
	}
	if sh.killed && code == 0 {
		code = -1
	}
	sh.finished(code, sig)
	return nil
}

func timerC(t *time.Timer) <-chan time.Time {
	if t == nil {
		return nil
	}
	return t.C
}

func (sh *shell) stopTimers() {
	for _, t := range []**time.Timer{&sh.ioTimer, &sh.maxTimer, &sh.sigtermTimer, &sh.backupTimer} {
		if *t != nil {
			(*t).Stop()
			*t = nil
		}
	}
}

// bigRead is the size of the pipe, and of each read from it, of a command
// that filled its pipe's first 64 KiB in one read, as a command that
// writes a lot does: fewer, larger reads and updates take its output for
// less CPU, on the worker and the master (whose set_worker_settings asks
// for updates of this size).
const bigRead = 256 << 10

// readBuffers holds the buffers that read fills from a command's pipes:
// large enough to take a pipe's whole content in one read, and reused,
// since most commands write little and allocating (and zeroing) two of
// them per command would cost more than running a short one.
var readBuffers = sync.Pool{New: func() any { return new([64 << 10]byte) }}

// read sends what the command writes on one of its outputs.
func (sh *shell) read(f *os.File, key string, want bool, done chan<- struct{}) {
	defer func() { done <- struct{}{} }()
	bp := readBuffers.Get().(*[64 << 10]byte)
	defer readBuffers.Put(bp)
	buf := bp[:]
	var dec utf8Decoder
	grown := false
	for {
		n, err := f.Read(buf)
		if n > 0 {
			sh.lastOutput.Store(int64(time.Since(sh.start)))
			if want {
				sh.r.send(Update{Key: key, Value: dec.decodeBytes(buf[:n])})
			}
		}
		if n == len(buf) && !grown {
			grown = true
			if growPipe(f, bigRead) {
				buf = make([]byte, bigRead)
			}
		}
		if err != nil {
			break
		}
	}
	if s := dec.flush(); s != "" && want {
		sh.r.send(Update{Key: key, Value: s})
	}
}

// kill stops the command: its process group gets SIGTERM first when
// "sigtermTime" is set, the interrupt signal otherwise.
func (sh *shell) kill(msg string) {
	sh.stopTimers()
	msg += ", attempting to kill"
	sh.r.log.Debug("shell command killed", "reason", msg)
	sh.header("\n" + msg + "\n")
	sh.killed = true
	if sh.sigtermTime != nil {
		sh.signal(syscall.SIGTERM)
		sh.sigtermTimer = time.NewTimer(sh.sigtermTime.duration())
		return
	}
	sh.signal(sh.interruptSignal)
	sh.backupTimer = time.NewTimer(backupTimeout)
}

// signal sends sig to the command's process group, or to the command
// alone if the group is gone.
func (sh *shell) signal(sig syscall.Signal) {
	if err := signalGroup(sh.cmd.Process.Pid, sig); err != nil {
		sh.cmd.Process.Signal(sig)
	}
}

// abandon gives up on a command that its signals did not end.
func (sh *shell) abandon() error {
	name := "SIG" + sh.interruptName
	sh.header(name + " failed to kill process\n")
	sh.header("using fake rc=-1\n")
	sh.r.send(Update{Key: "rc", Value: -1})
	return errors.New(name + " failed to kill process")
}

// finished reports how the command ended: RunProcess.finished.
func (sh *shell) finished(code, sig int) {
	elapsed := time.Since(sh.start)
	for _, w := range sh.watchers {
		sh.pollLog(w)
		w.close()
	}
	if sig != 0 {
		code = -1
		sh.header(fmt.Sprintf("process killed by signal %d\n", sig))
	}
	sh.r.send(Update{Key: "rc", Value: code})
	sh.header(fmt.Sprintf("elapsedTime=%0.6f\n", elapsed.Seconds()))
}

func (sh *shell) pollLogfiles() {
	for _, w := range sh.watchers {
		sh.pollLog(w)
	}
}

func (sh *shell) pollLog(w *logWatcher) {
	if text := w.poll(sh.r); text != "" {
		sh.lastOutput.Store(int64(time.Since(sh.start)))
		sh.r.send(Update{Key: "log", Value: [2]string{w.name, text}})
	}
}
