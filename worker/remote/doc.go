// Package remote is the master's side of network workers: a Listener that
// accepts workers on the master's worker port and attaches each to the
// master as a Conn, a ci.WorkerConn speaking Buildbot's worker protocol
// msgpack_experimental_v7 (doc/protocol.md in the repository).
// A stock buildbot-worker created with --protocol msgpack_experimental_v7
// runs a Kiln master's builds, and so does the Kiln worker.
//
// # Use
//
// Add a Listener to the master's services; every worker in the
// configuration with a Password may connect:
//
//	cfg.Workers = []ci.WorkerConfig{{Name: "linux-1", Password: "$2b$10$..."}}
//	cfg.Services = append(cfg.Services, &remote.Listener{})
//
// It listens on Addr, else DefaultAddr (":9989", Buildbot's port); with
// CertFile and KeyFile (or TLSConfig) it serves wss:// instead of ws://.
//
// # Connection and authentication
//
// A worker dials ws://host:port/ (path "/", no subprotocol, no compression)
// with HTTP Basic credentials, its name and password, on the upgrade
// request. The configured WorkerConfig.Password is either the plain
// password, compared in constant time (SHA-256 digests of both are
// compared, so that not even the length leaks), or a bcrypt hash ("$2a$",
// "$2b$", "$2y$"). An unknown worker, a wrong password and a worker with no
// password configured all get the same 401; the failure is logged with the
// name given and the remote address, never the password.
//
// Failed logins are throttled per address (an IPv4 address, or an IPv6
// /64): after FreeFailures failures (5 by default) the address is locked
// out for one second, doubling with each further failure up to five
// minutes. While locked out, the address is answered 429 with Retry-After,
// before any credentials are checked, so that guessing stops and bcrypt
// costs nothing. A successful login clears the address, and so do fifteen
// minutes without failures. Workers sharing an address with an attacker
// (behind NAT or a proxy) share its lockouts; a negative FreeFailures turns
// the throttle off.
//
// A second connection under the name of a connected worker is refused
// before the upgrade, with 409 and a one-line reason, until the first is
// closed or declared lost (Timeout without a word from it): a stalled
// worker keeps its name, so that a password captured off the network
// cannot take its place while it is away. (Buildbot's master replaces an
// old connection that does not answer at once.) The old connection is sent
// print "master got a duplicate connection" with a short deadline
// (Timeout/4, at most 5 s), so that the refusal says whether it answers;
// the refusal is logged with both remote addresses.
//
// # Frames
//
// Every frame is one binary WebSocket message holding one MessagePack map,
// decoded with package protocol's codec. Each side numbers its requests
// ("seq_number", from 0); every request is answered with a "response"
// carrying the same number, a "result", and "is_exception": true on
// failure. The master answers every request of the worker, with an
// exception when its handler failed, so that the worker fails the command.
//
// # Handshake
//
// Once upgraded, the master sends, as Buildbot 3.7's does: print
// "attached"; get_worker_info (its answer is Conn.Info, "environ"
// included as a map[string]string, which the master keeps out of its
// store);
// set_worker_settings with Buildbot's values (max_line_length 4096 and
// its newline regexp) but buffer_timeout 0.2 seconds instead of 5, so that
// a log followed live does not come in bursts 5 seconds apart, and
// buffer_size 262144 instead of 65536, so that a command that writes a lot
// sends a quarter of the updates. The
// master then attaches the connection (ci.Master.AttachWorker), which calls
// SetBuilders: listdir of the worker's base folder; stat and rmdir of
// leftover folders if the worker reports delete_leftover_dirs; mkdir of the
// builder folders missing, and "info", joined with the worker's path rules
// ("posix" or "nt"); then one print "attached" per builder. Buildbot's
// set_builder_list is not sent: the stock worker does not know it.
//
// Until get_worker_info and set_worker_settings are answered, the worker
// may send nothing but responses. A Listener runs at most 64 handshakes at
// once; the other upgraded connections wait for theirs in a queue, so that
// a thousand workers connecting at once (after a restart of the master)
// do not each hold a handshake's memory at the same time.
//
// # Commands
//
// Conn.RunCommand translates a build step's command with
// protocol.TranslateArgs and sends start_command with "builder_name", a
// "command_id" unique on the connection (a decimal string), "command_name"
// and "args". The worker's requests about the command are handed to the
// step's ci.RemoteCommand in the order they arrive, from the goroutine that
// called RunCommand:
//
//	update                          each [key, value] pair to Update, with values converted:
//	                                stdout, stderr, header: string (v7's [text, offsets, times] or a string)
//	                                log: [2]string{name, text}; rc: int; elapsed: float64;
//	                                files: []string; stat: []int64; others as decoded
//	update_upload_file_write        Upload.Write
//	update_upload_file_close        Upload.Close
//	update_upload_file_utime        Upload.Utime
//	update_upload_directory_write   Upload.Write
//	update_upload_directory_unpack  Upload.Unpack
//	update_read_file                up to "length" bytes of Download, as binary (empty at the end)
//	update_read_file_close          Download.Close
//	complete                        RunCommand returns: nil, or a *ci.CommandError if args is not nil
//
// The complete of a command may arrive before the response to its
// start_command (the stock worker runs short commands at once); a refused
// start_command is a *ci.CommandError. When RunCommand's context ends, the
// master sends interrupt_command ("builder_name", "command_id", "why": the
// context's cause) and waits up to InterruptTimeout for the worker to
// complete the command, keeping its last output and exit code.
//
// Messages for a command that is not running (late messages of an
// interrupted command) are answered with an exception and counted, as are
// responses to requests nobody waits for any more (Conn.Stats,
// Listener.Stats).
//
// # Liveness
//
// Every KeepaliveInterval (Timeout/4 by default: 15 s) the master sends a
// WebSocket ping and the protocol's keepalive, each with a deadline. A
// worker from which nothing has come (no frame, no pong) for Timeout (60 s
// by default) is lost: its connection is closed, Done is closed, and the
// RunCommand calls waiting on it return errors wrapping ci.ErrWorkerLost, so
// that the master ends their builds RETRY and builds the requests again.
// Before that, a worker not heard from for a keepalive interval and a
// little more (a quarter of the interval, at most 5 s) has missed an
// answer: Conn.Silence (ci.SilenceWatcher) reports it silent, with the
// time it will be lost, and the web UI shows it. Each frame written to a
// worker has a deadline (WriteTimeout, 30 s): a worker that does not read
// is lost too, and never holds up others. Ping (print "ping", which the
// master sends before a build to a worker quiet for ci.PingQuiet, as told
// by Conn.LastHeard) waits at most Timeout.
//
// # Limits
//
// A frame may hold protocol.MaxFrameSize bytes (the WebSocket read limit);
// a command's messages waiting for its step may hold 32 MiB, past which the
// connection stops reading until the step catches up (that time does not
// count as the worker's silence); frames waiting to be written may number
// 4096 or hold 64 MiB; an update_read_file is answered with at most 8 MiB.
// Request headers may hold 16 KiB and must arrive within Timeout, as must
// the whole handshake once started. A WebSocket close handshake is given 2 s.
//
// A malformed frame, a frame over the limit, a text message, a message with
// a key of the wrong type (a non-string command_id, update args that are
// not [key, value] pairs, an rc that is not an integer...), a request before
// the handshake ends, or a get_worker_info answer that is not a map closes
// that connection, with the reason logged; nothing else is affected.
//
// # Differences from Buildbot's master
//
//   - Buildbot sends keepalive every 3600 s without a deadline and no
//     WebSocket pings, so a half-open connection goes unnoticed for an hour;
//     Kiln detects a silent worker within Timeout.
//   - Buildbot compares plain passwords with ==, has no bcrypt and no
//     throttle, and arbitrates duplicate names after the upgrade (closing
//     the newcomer's WebSocket); Kiln answers 401, 429 and 409 before it.
//   - Buildbot ignores text messages and messages without op or
//     seq_number, and a malformed frame raises inside its reader; Kiln
//     closes the connection.
//   - Buildbot's update_upload_file_utime handler passes the strings
//     "access_time" and "modified_time" to the writer instead of the times;
//     Kiln passes the times.
//   - Buildbot answers an unknown op with an exception and so does Kiln,
//     except keepalive, which Kiln answers.
//
// Note for stock workers: buildbot-worker runs in one thread, so a command
// that blocks it (the tar of a huge folder for a directory upload) also
// stops its answers to pings; raise Timeout for such workers.
package remote
