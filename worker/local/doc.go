// Package local is the in-process worker: a worker that runs in the
// master's own process, for one-machine setups and for tests.
//
// It runs commands with package command, the same code the network worker
// runs, behind the same ci.WorkerConn interface a network connection
// implements, so that a build behaves the same on both. Only the transport
// differs: instead of MessagePack frames, the command's updates and file
// transfers are handed to the ci.RemoteCommand directly, in order, from
// the goroutine that called RunCommand.
//
// # Use
//
// Add a Worker to the master's services, with a name the configuration
// lists among its workers:
//
//	cfg.Workers = []ci.WorkerConfig{{Name: "local"}}
//	cfg.Services = append(cfg.Services, &local.Worker{Name: "local", Dir: "/srv/kiln/worker"})
//
// Tests and benchmarks can drive a connection without a master: NewConn
// returns one, SetBuilders creates the builders' folders, and RunCommand
// runs ci.RemoteCommands in Buildbot's master-side form.
//
// # Paths
//
// Builder folders are under the worker's folder (Dir), and, as with the
// network worker, commands may not reach outside it unless the worker is
// Unconfined.
package local
