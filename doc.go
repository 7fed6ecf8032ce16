// Package kiln is a continuous-integration framework for Go in the family
// of Buildbot: a master decides what to build and when, workers on other
// machines run the commands, and the whole configuration is Go code compiled
// into the user's own master program.
//
// This package holds no code; it is the map of the packages that do.
//
// # How the packages fit
//
// Each package of the module, but the internal ones (a test keeps this
// list complete):
//
//	ci                   the core: MasterConfig and Master, builders, the
//	                     Step interface, properties and renderables
//	                     (Interpolate), results, changes, build requests,
//	                     the interfaces of schedulers, force schedulers,
//	                     workers, reporters and stores, the build runner.
//	                     Standard library only; its doc is the guide.
//	ci/steps             the steps builds are made of: ShellCommand, Git,
//	                     SetPropertyFromCommand, FileUpload, FileDownload,
//	                     DirectoryUpload, MasterShellCommand,
//	                     RemoveDirectory, MakeDirectory, Trigger, and JUnit
//	                     (test results from JUnit XML reports).
//	ci/steps/debian      Debian packages: Sbuild, Lintian, Dput,
//	                     SbuildUpdate, CheckVersion, and the APT Archive a
//	                     master keeps and serves, with the Publish step.
//	ci/sqlite            the store: every change, request, build, step and
//	                     log in one SQLite file (state.sqlite), pure Go.
//	ci/postgres          the same records in PostgreSQL, for a Database
//	                     that is a postgres:// URL.
//	ci/storetest         the conformance suite every store passes.
//	ci/citest            go test of pipelines: a real master with
//	                     in-process workers in a temporary folder, a fake
//	                     clock.
//	ci/report            reporters: GitHub commit status, IRC, e-mail,
//	                     HTTP push.
//	ci/metrics           the master's figures for Prometheus (/metrics).
//	ci/janitor           a service that bounds the store: old logs and
//	                     builds deleted on a schedule.
//	ci/secret            secret providers: the environment, a folder of
//	                     files, a KEY=VALUE file.
//	scheduler            schedulers: Force and the others of Buildbot
//	                     (AnyBranch, SingleBranch, Periodic, Nightly,
//	                     Triggerable, Dependent), ChangeFilter.
//	hook                 change hooks: GitHub, GitLab and Buildbot's base
//	                     hook, at /change_hook/<dialect>.
//	webui                the web application and the JSON API (/api/v2).
//	worker               the worker agent, which runs on worker machines.
//	worker/protocol      what the master and the worker share: the
//	                     protocol's vocabulary and its MessagePack codec
//	                     (the protocol: doc/protocol.md).
//	worker/command       the commands a worker runs.
//	worker/remote        the master's side of network workers.
//	worker/local         the in-process worker.
//	cmd/kiln-worker      the worker program.
//	cmd/kiln-migrate     copies a master's state.sqlite into an empty
//	                     PostgreSQL database, numbering kept.
//	examples/hello       the master of the README: one builder testing a Go
//	                     repository, an in-process worker, the web API.
//	examples/quickstart  Kiln on one machine: a master that builds a small
//	                     repository of its own and keeps serving.
//	ideascube            the Ideascube project's master program, with its
//	                     deployment guide.
//
// # Data flow
//
// A change (from a webhook, or a test) goes to Master.AddChange, which
// stores it and hands it to the schedulers; a scheduler (or a person forcing
// a build) submits a buildset with Master.Submit: one build request per
// builder, stored before anyone is told. The master gives each pending
// request to a free worker of its builder and runs the builder's steps in
// order; each step acts on the worker only by sending remote commands
// (shell, mkdir, uploadFile, ...) through a ci.WorkerConn, which is either a
// network connection speaking Buildbot's msgpack_experimental_v7 protocol or
// the in-process worker. Output streams into logs stored in chunks and
// readable while the build runs; results go to the store, and events tell
// the web UI and reporters. Package ci's documentation follows the flow
// type by type; doc/protocol.md describes the worker protocol and
// doc/operations.md how to keep a master running.
//
// A minimal master:
//
//	cfg := ci.MasterConfig{
//		Title:   "Hello",
//		BaseDir: "master",
//		Workers: []ci.WorkerConfig{{Name: "local"}},
//		Builders: []ci.BuilderConfig{{
//			Name:    "test",
//			Workers: []string{"local"},
//			Steps: []ci.Step{
//				&steps.Git{RepoURL: "https://example.org/hello.git"},
//				&steps.ShellCommand{Command: []string{"go", "test", "./..."}},
//			},
//		}},
//		Schedulers: []ci.Scheduler{&scheduler.Force{Name: "force", Builders: []string{"test"}}},
//		Services: []ci.Service{
//			&local.Worker{Name: "local", Dir: "master/worker"},
//			&webui.Server{},
//		},
//	}
//	m, err := ci.NewMaster(cfg)
//	if err != nil {
//		log.Fatal(err)
//	}
//	log.Fatal(m.Run(ctx))
package kiln
