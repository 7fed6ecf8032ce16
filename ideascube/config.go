package main

import (
	"net/http"
	"strings"

	"github.com/kilnci/kiln/ci"
	"github.com/kilnci/kiln/ci/metrics"
	"github.com/kilnci/kiln/ci/report"
	"github.com/kilnci/kiln/ci/steps"
	"github.com/kilnci/kiln/hook"
	"github.com/kilnci/kiln/scheduler"
	"github.com/kilnci/kiln/webui"
	"github.com/kilnci/kiln/worker/remote"
)

// The names of Ideascube's workers and builders.
const (
	workerAmd64 = "worker-amd64"
	workerArmhf = "worker-armhf"
)

// architectures maps each builder to its architecture and worker, as the
// deployment grew: i386 packages are built on the amd64 machine.
var architectures = []struct {
	builder, arch, worker string
}{
	{"build-amd64-pkg", "amd64", workerAmd64},
	{"build-armhf-pkg", "armhf", workerArmhf},
	{"build-i386-pkg", "i386", workerAmd64},
}

// config is Ideascube's master configuration.
func config(o options, s secrets) (ci.MasterConfig, error) {
	var builders []ci.BuilderConfig
	var names []string
	for _, a := range architectures {
		builders = append(builders, ci.BuilderConfig{
			Name:        a.builder,
			Description: "the Debian package of ideascube for " + a.arch,
			Workers:     []string{a.worker},
			Properties:  map[string]any{"arch": a.arch},
			Tags:        []string{"deb", a.arch},
			Steps:       packageSteps(o),
		})
		names = append(names, a.builder)
	}

	admin, password := s[secretAdminUser], s[secretAdminPassword]
	col := &metrics.Collector{}
	cfg := ci.MasterConfig{
		Title:      "Ideascube",
		TitleURL:   "https://github.com/ideascube",
		PublicURL:  o.PublicURL,
		BaseDir:    o.BaseDir,
		Database:   "state.sqlite",
		HTTPAddr:   o.HTTPAddr,
		WorkerAddr: o.WorkerAddr,
		Workers: []ci.WorkerConfig{
			{Name: workerAmd64, Password: s[secretAmd64Password], Properties: map[string]any{"dput_method": "local"}},
			{Name: workerArmhf, Password: s[secretArmhfPassword], Properties: map[string]any{"dput_method": "remote"}},
		},
		Builders: builders,
		Schedulers: []ci.Scheduler{
			&scheduler.Force{Name: "force", Builders: names},
			&scheduler.AnyBranch{Name: "tags", Builders: names, ChangeFilter: scheduler.ChangeFilter{Category: []string{hook.CategoryNewTag}}},
		},
		ChangeHooks: []ci.ChangeHook{
			&hook.GitHub{Secret: s[secretGitHub], Strict: true},
			&hook.GitLab{Secret: s[secretGitLab]},
		},
		ShutdownTimeout: o.Drain,
		Services: []ci.Service{
			&remote.Listener{},
			col,
			&webui.Server{
				Options: webui.Options{
					Auth:  &webui.BasicAuth{Users: map[string]string{admin: password}, AllowPlain: !isBcrypt(password), Realm: "Ideascube"},
					Authz: webui.Authz{Force: webui.LoggedIn, Stop: webui.LoggedIn},
				},
				Mounts: map[string]http.Handler{"/metrics": col},
			},
		},
	}
	if server := s[secretIRCServer]; server != "" {
		nick := s[secretIRCNick]
		if nick == "" {
			nick = "ideascube-ci"
		}
		cfg.Reporters = append(cfg.Reporters, &report.IRC{
			Addr:     server,
			Nick:     nick,
			Channels: []string{"#ideascube"},
			Notify:   []string{"started", "finished", "success", "failure"},
		})
	}
	return cfg, nil
}

// packageSteps are the steps of every builder: check out the tag (master
// when forced without one), refresh the sbuild chroot, build the source
// and binary packages, upload them.
func packageSteps(o options) []ci.Step {
	halt := func(name string) ci.StepOptions { return ci.StepOptions{Name: name, HaltOnFailure: true} }
	return []ci.Step{
		&steps.Git{
			RepoURL: o.Repo,
			Branch:  ci.Interpolate("%(src::branch:~master)s"),
			Mode:    steps.Incremental,
		},
		&steps.ShellCommand{
			StepOptions: halt("sbuild-update"),
			Command: []any{"sudo", "sbuild-update", "--update", "--dist-upgrade", "--clean", "--autoclean", "--autoremove",
				ci.Interpolate("%(kw:dist)s-%(prop:arch)s-sbuild", "dist", o.Dist)},
		},
		&steps.ShellCommand{
			StepOptions: halt("sbuild"),
			Command: []any{"sbuild", "--verbose", "--source", "--dist=" + o.Dist, ci.Interpolate("--arch=%(prop:arch)s"),
				"--build-dep-resolver=aptitude", "--extra-repository=" + o.ExtraRepository},
		},
		&steps.ShellCommand{
			StepOptions: halt("dput"),
			Command: []any{"dput", ci.Interpolate("%(prop:dput_method)s"),
				ci.Interpolate("%(prop:builddir)s/ideascube_%(src::branch)s_%(prop:arch)s.changes")},
		},
	}
}

// isBcrypt reports whether a password is given as a bcrypt hash.
func isBcrypt(s string) bool {
	return strings.HasPrefix(s, "$2a$") || strings.HasPrefix(s, "$2b$") || strings.HasPrefix(s, "$2y$")
}
