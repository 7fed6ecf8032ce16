// Package worker is the Kiln worker agent: the program side that runs on a
// worker machine, connects to a master and runs the commands of its builds.
// The kiln-worker binary is a thin wrapper around it; a Go program can embed
// it as well.
//
// The agent speaks Buildbot's worker protocol, msgpack_experimental_v7 (see
// doc/protocol.md in the repository), so it works with a Kiln
// master and with a stock Buildbot 3.x master configured with
// c['protocols'] = {'msgpack_experimental_v7': {'port': N}}. It runs
// commands with package command, as buildbot-worker runs them, and shares
// only package protocol with the master's side.
//
// # Use
//
//	w := &worker.Worker{
//		Name:     "amd64",
//		Password: "secret",
//		Master:   "ci.example.org:9989",
//		BaseDir:  "/srv/kiln-worker",
//	}
//	err := w.Run(ctx) // until ctx ends or the master sends shutdown
//
// Run returns nil when ctx ends or the master asks the worker to shut down,
// after interrupting the running commands and letting them report how they
// ended; it returns an error only for a configuration it cannot use.
//
// # Connection
//
// The worker dials the master over WebSocket (ws://host:port/, or wss:// with
// TLS, checked against the system's roots or CAFile), authenticating with HTTP
// Basic credentials on the upgrade request. When the connection is refused
// (the master is down, or answers HTTP 401 to a wrong name or password) or
// lost, the worker dials again after a wait that doubles from MinBackoff up
// to MaxBackoff, each wait drawn at random between half and all of its
// value, so that the workers of a restarted master do not all come back in
// the same second. The wait starts again from MinBackoff once the master has
// attached the worker (it sent set_worker_settings, set_builder_list or a
// command).
//
// Buildbot's master sends an application keepalive only every hour; the
// connection's TCP keepalives notice a master that vanished without closing
// it. WebSocket pings are answered. Each frame written must be accepted
// within WriteTimeout, or the connection is dropped and dialled again.
//
// # Requests
//
// Every request of the master gets a response with its seq_number; the
// worker numbers its own requests from 0 on each connection, as
// buildbot-worker does.
//
//	print                logged
//	keepalive            answered
//	get_worker_info      environ, system, basedir, numcpus, version,
//	                     worker_commands, delete_leftover_dirs, the os_*
//	                     fields of /etc/os-release, and one key per file of
//	                     BaseDir/info (admin and host by convention)
//	set_worker_settings  buffer_size, buffer_timeout, max_line_length and
//	                     newline_re for the commands started afterwards
//	set_builder_list     creates the builders' folders (listed in Buildbot's
//	                     documentation; its shipped worker does not accept it,
//	                     and its master sends mkdir instead)
//	start_command        runs the command in a goroutine of its own; it sends
//	                     update requests (v7 output values; up to eight await
//	                     the master's response at once) and the file
//	                     transfer requests, each awaiting the master's
//	                     response, then complete (nil, or the failure's text)
//	interrupt_command    cancels the command: a shell command's process group
//	                     gets its interrupt signal, and the command still
//	                     reports its rc and completes
//	shutdown             answered, then the worker stops as when ctx ends
//
// A request that cannot be carried out (an unknown op or command, a missing
// or mistyped argument) gets an exception response and the connection goes
// on. A frame that breaks the protocol itself (not MessagePack, not a map
// with op and seq_number, larger than protocol.MaxFrameSize, a text frame, a
// response to nothing) closes the connection with a logged reason, and the
// worker dials again.
//
// If the connection is lost, running commands are interrupted: nobody is
// left to report to, and the master counts their builds as lost.
//
// # Paths
//
// Commands may not reach outside BaseDir (see package command) unless the
// worker is Unconfined. Buildbot's master sends absolute paths built from the
// basedir the worker reports, which is BaseDir made absolute.
//
// # Configuration file
//
// ReadConfig and FormatConfig read and write the configuration file
// kiln-worker keeps in the base folder (ConfigFile).
//
// # With a stock Buildbot master
//
// kiln-worker serves Debian's Buildbot 3.7 master over
// msgpack_experimental_v7. The interop test of cmd/kiln-worker runs one
// build of some forty steps (shell commands with every option, Git
// checkouts in each mode, property setting, transfers both ways, folder
// commands, timeouts) once on kiln-worker and once on buildbot-worker,
// and requires the same step results and the same logs, byte for byte
// but for timings, environments, temporary paths and the differences
// listed below. What that master does over msgpack, whatever the worker:
//
//   - It answers update_read_file without the data it read, so
//     FileDownload and StringDownload write empty files (with the right
//     mode).
//   - An upload with keepstamp=True raises an exception in the master
//     ("FileWriter.remote_utime() takes 2 positional arguments but 3 were
//     given") when the timestamps it asked for arrive, and the build ends
//     there.
//   - It sends mkdir for the builders' folders instead of
//     set_builder_list, and expects the worker's basedir to be absolute.
//   - It stores log lines with \r\n and lone \r turned into \n, so a
//     command on a PTY logs as one on pipes.
//
// # Differences from buildbot-worker
//
// Commands behave as package command documents. The connection differs in
// these ways:
//
//   - Paths outside the base folder are refused unless Unconfined.
//   - wss:// is supported, with the master's certificate verified.
//   - set_builder_list is accepted.
//   - The response to start_command goes out before the command's first
//     update; buildbot-worker answers once the command has started, which
//     for a quick command is after its complete.
//   - At most eight updates of a command await the master's response at
//     once: past that, the command's output waits, so a slow master slows
//     its workers' output down instead of letting it pile up;
//     buildbot-worker never waits. As with buildbot-worker, an update the
//     master refuses is logged and the command goes on.
//   - A lost connection interrupts the running commands; buildbot-worker's
//     msgpack connection lets them run on, reporting to nobody.
//   - On shutdown, and when Run's context ends (SIGTERM for kiln-worker),
//     running commands are interrupted and report their rc and complete,
//     then the connection is closed with a close frame (status 1001).
//     buildbot-worker stops 0.2 s after answering shutdown, and on SIGTERM
//     drops the TCP connection.
//   - A malformed frame closes the connection (buildbot-worker logs invalid
//     messages and goes on); set_worker_settings takes any of its four
//     settings, type-checked, where buildbot-worker needs all four;
//     interrupt_command's "why" is optional.
//   - Reconnection waits double from MinBackoff with jitter, up to
//     OutageBackoff (5 s) while the master cannot be reached, so that a
//     restarted master has its workers back within seconds whatever the
//     outage's length, and up to MaxBackoff only after a refusal; they
//     start again from MinBackoff once attached. (buildbot-worker's grow
//     to its maxdelay, 300 s, in both cases.) HTTP proxies from the
//     environment are not used.
//   - numcpus is runtime.NumCPU, the CPUs the process may use, where
//     Python counts the machine's.
package worker
