// Package command runs the commands a master sends to a worker: shell
// commands, file and directory transfers, and the small file-system
// commands (mkdir, rmdir, cpdir, stat, glob, listdir, rmfile). It behaves
// as buildbot-worker 3.7 does, with the arguments a stock Buildbot master
// sends (absolute paths; see package protocol for how the master builds
// them), so that the network worker and the in-process worker run
// commands the same way.
//
// The package knows nothing of connections: a running command talks back
// through a Host, which the caller implements. The network worker's Host
// turns each call into a protocol message (update, update_upload_file_write,
// update_read_file...); the in-process worker's Host hands the calls to the
// master's objects directly.
//
// # Running a command
//
// Run runs one command to its end:
//
//	err := command.Run(ctx, host, "shell", map[string]any{
//		"workdir": "/srv/worker/runtests/build",
//		"command": []any{"go", "test", "./..."},
//	}, &command.Options{BaseDir: "/srv/worker"})
//
// Run returns nil when the command completed normally, whatever its exit
// code: a shell command that exits 1 reports {"rc", 1} through the Host and
// completes normally. An error is the command's own failure, what the
// protocol's "complete" carries (a missing argument, a path outside the
// base folder, a master that refused a transfer). Errors wrapping
// ErrUnknownCommand or ErrMissingArgs are found before anything runs; a
// stock worker refuses such a start_command instead of completing it.
//
// Cancelling ctx is the protocol's interrupt_command: the output so far is
// flushed, a shell command's process group gets its interrupt signal
// ("interruptSignal", KILL by default), and Run returns once the command
// has reported how it ended. Calls to the Host are made with a context that
// is not cancelled with ctx, so that the last updates still go out.
//
// # Updates
//
// Updates go to the Host in batches, in the order they happened, with
// Buildbot's keys and these Go types:
//
//	"stdout", "stderr", "header"  string: whole lines, each ending in "\n"
//	"log"                         [2]string{log file name, whole lines}
//	"rc"                          int: exit code; -1 for a process killed by a signal
//	"elapsed"                     float64: seconds the command took
//	"files"                       []string (listdir, glob)
//	"stat"                        []int64: Python's os.stat 10-tuple (stat)
//
// Text updates carry the time each of their lines began to arrive
// (Update.Times), which the msgpack protocol sends along with the newline
// offsets. Output is cut into lines as buildbot-worker does: the newline
// expression turns carriage returns, cursor movements and backspaces into
// line ends, overlong lines are split, and a last line without a newline
// is sent, with one added, when the command completes; so it may arrive
// after "rc", as it does from a stock worker. Batching follows the
// master's set_worker_settings: a batch is sent when it reaches BufferSize
// or BufferTimeout after its first update, and at completion. Text that
// does not fit in what is left of a batch fills it with whole lines, and
// the rest goes on to the next batch (buildbot-worker sends the batch,
// then the text alone); so a batch may hold two text updates of one
// stream, and output read fast goes in full batches.
//
// # Paths
//
// Commands work on the absolute paths they are given. A relative path is
// taken from the worker's base folder (Options.BaseDir), as
// buildbot-worker, which runs in its base folder, does. Unless
// Options.Unconfined is set, a path that leads outside the base folder,
// lexically ("../") or through a symbolic link, is refused with an error
// wrapping ErrOutsideBase, for every command. A build's shell commands can
// of course still reach anywhere the worker's user can; the rule keeps the
// master's paths, and file transfers above all, inside the worker's folder.
//
// Standard output and standard error are read apart, so their relative
// order is not kept, as with buildbot-worker.
//
// # Differences from buildbot-worker
//
//   - usePTY=true gives the command a PTY on Linux only (as its stdin,
//     stdout and stderr, all read as stdout, and its controlling
//     terminal); elsewhere it is ignored, with buildbot-worker's
//     "WARNING: disabling usePTY for this command" header.
//   - The interrupt signal goes to the whole process group every time;
//     buildbot-worker signals only the leader when SIGKILL follows SIGTERM
//     (sigtermTime).
//   - A program that cannot start (missing executable, impossible
//     workdir) reports the reason on stderr and rc 1 and completes normally.
//   - rmdir and cpdir are done in Go rather than by running rm -rf and
//     cp -R -P -p -v: they send no headers for the helper process, and a
//     failure is reported as a header line and rc 1.
//   - listdir and glob return names sorted; Python returns them in
//     directory order.
//   - Overlong lines are cut every MaxLineLength-1 characters without
//     losing any; buildbot-worker 3.7's splitter mangles them.
//   - A file upload of exactly maxsize bytes is not reported as truncated.
//   - A log file followed with "follow" skips what it held when the
//     command started; buildbot-worker skips what it holds when it first
//     sees it changed, which depends on when it polls.
//   - Log files are read every Options.LogfilePoll (2 s by default, as
//     buildbot-worker) and once more when the command ends.
//   - upload_directory with compress "bz2" pipes the archive through the
//     bzip2 program (Go's standard library cannot write bzip2); without one
//     the command fails with a clear error.
package command
