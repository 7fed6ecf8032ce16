// Package steps has the steps builds are made of: Buildbot's ShellCommand,
// Git, SetPropertyFromCommand, FileUpload, FileDownload, DirectoryUpload,
// MasterShellCommand, RemoveDirectory, MakeDirectory and Trigger, as Go
// values; and JUnit, which records the test results of JUnit XML reports
// as Buildbot's test result sets.
//
// Every step embeds ci.StepOptions (name and flow options) and acts on the
// worker only by sending remote commands through its ci.StepRun, so the same
// steps run on a network worker and on the in-process worker. Fields that
// say "or a ci.Renderable" accept ci.Interpolate, ci.Prop or ci.RenderFunc
// values, computed when the build runs.
//
// # Commands and the shell
//
// A command given as a list ([]string or []any) is run as an argument
// vector: no shell sees it, and values substituted into its elements (branch
// names, tags) stay single arguments whatever they hold. A command given as
// a string is run with /bin/sh -c; when that string is a ci.Interpolate,
// every value it substitutes is shell-quoted (see
// ci.Interpolation.RenderShell), so data from outside never becomes shell
// syntax. A ci.RenderFunc returning a string is run as the function wrote
// it.
//
// # Paths
//
// Worker paths (Workdir, WorkerSrc, WorkerDest) are relative to the
// builder's folder on the worker; Workdir defaults to "build", as in
// Buildbot. Master paths (MasterSrc, MasterDest) are relative to the
// master's base folder; once rendered they may not contain ".." elements, so
// that a property cannot lead a file outside the folder the configuration
// chose.
package steps
