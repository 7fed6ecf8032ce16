// Package kiln is a continuous-integration framework for Go in the family
// of Buildbot: a master decides what to build and when, workers on other
// machines run the commands, and the whole configuration is Go code compiled
// into the user's own master program.
//
// This package holds no code; it is the map of the packages that do.
//
// # How the packages fit
//
//	ci            the core: MasterConfig and Master, builders, the Step
//	              interface, properties and renderables (Interpolate),
//	              results, changes, build requests, the storage
//	              interfaces, the build runner. Standard library only.
//	ci/steps      the steps builds are made of: ShellCommand, Git,
//	              SetPropertyFromCommand, FileUpload, FileDownload,
//	              DirectoryUpload, MasterShellCommand, RemoveDirectory,
//	              MakeDirectory.
//	ci/steps/debian  Debian packages: Sbuild, Lintian, Dput, SbuildUpdate,
//	              CheckVersion, and the APT Archive a master keeps and
//	              serves, with the Publish step.
//	ci/sqlite     the store: every change, request, build, step and log in
//	              one SQLite file (state.sqlite), pure Go, no cgo.
//	ci/postgres   the same records in PostgreSQL, for a Database that is a
//	              postgres:// URL; cmd/kiln-migrate copies state.sqlite there.
//	ci/citest     go test of pipelines: a real master with in-process
//	              workers in a temporary folder.
//	scheduler     schedulers: Force and the others of Buildbot.
//	worker        the worker side: the protocol shared with the master
//	              (worker/protocol), the commands a worker runs
//	              (worker/command), the in-process worker (worker/local).
//	webui         the web application and the JSON API (/api/v2).
//	cmd/kiln-worker, examples/, ideascube/
//	              programs that wire the packages together.
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
// the web UI and reporters.
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
