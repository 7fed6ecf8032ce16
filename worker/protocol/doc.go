// Package protocol is the vocabulary the Kiln master and the Kiln worker
// share: the names of the remote commands and the translation of a
// command's arguments from the form build steps write them in to the form
// the worker receives.
//
// Kiln speaks Buildbot's worker protocol, msgpack_experimental_v7 (see
// doc/protocol.md in the repository), so the names and shapes here are
// Buildbot's.
//
// # Master-side and wire arguments
//
// Build steps write a command's arguments with paths relative to the
// builder's folder on the worker: a shell step's "workdir" is "build", a
// file upload names "workdir" and "workersrc". Before a command goes on the
// wire, the master joins those paths under the builder's folder, with the
// path rules of the worker's system ("posix" or "nt"), and renames the
// transfer commands ("uploadFile" becomes "upload_file"). TranslateArgs does
// that, exactly as Buildbot's master does in remoteStartCommand, so that a
// stock buildbot-worker receives from a Kiln master what it would receive
// from a Buildbot master. The worker then works with absolute paths only.
//
// This package imports only the standard library: the worker agent imports
// it, and the worker agent never imports the master's packages.
package protocol
