package main

import (
	"context"
	"fmt"
	"net/http"
	"path"
	"slices"
	"strings"

	"github.com/kilnci/kiln/ci"
	"github.com/kilnci/kiln/ci/metrics"
	"github.com/kilnci/kiln/ci/report"
	"github.com/kilnci/kiln/ci/steps"
	"github.com/kilnci/kiln/ci/steps/debian"
	"github.com/kilnci/kiln/hook"
	"github.com/kilnci/kiln/scheduler"
	"github.com/kilnci/kiln/webui"
	"github.com/kilnci/kiln/worker/remote"
)

// workers are Ideascube's worker machines, and the dput host each uploads
// with (its dput_method property). Adding a machine is adding a line here
// (and its architectures below); its password is the secret
// IDEASCUBE_<NAME>_PASSWORD (see workerSecret).
var workers = []struct {
	name, dputMethod string
}{
	{"worker-amd64", "local"},
	{"worker-armhf", "remote"},
}

// architectures maps each builder to its architecture and worker, as the
// deployment grew: i386 packages are built on the amd64 machine.
var architectures = []struct {
	builder, arch, worker string
}{
	{"build-amd64-pkg", "amd64", "worker-amd64"},
	{"build-armhf-pkg", "armhf", "worker-armhf"},
	{"build-i386-pkg", "i386", "worker-amd64"},
}

// mainArch is the architecture whose builder also builds the source
// package and the architecture-independent ones: the archive takes each
// of those once.
const mainArch = "amd64"

// buildArch is the architecture of the machine that cross-builds, when
// -cross names architectures.
const buildArch = "amd64"

// archivePath is where the master serves its APT archive.
const archivePath = "/debian"

// config is Ideascube's master configuration.
func config(o options, s secrets) (ci.MasterConfig, error) {
	archive := &debian.Archive{
		Folder: "debian",
		Distributions: []debian.Distribution{{
			Codename:      o.Dist,
			Components:    []string{"main"},
			Architectures: []string{"amd64", "armhf", "i386", "source"},
			Description:   "Ideascube packages built by Kiln",
		}},
		Origin:     "Ideascube",
		Label:      "Ideascube",
		SigningKey: s[secretArchiveKey],
		Unsigned:   o.ArchiveUnsigned,
	}
	var builders []ci.BuilderConfig
	var names []string
	chroots := chrootLocks{}
	for _, a := range architectures {
		builders = append(builders, ci.BuilderConfig{
			Name:        a.builder,
			Description: "the Debian package of ideascube for " + a.arch,
			Workers:     []string{a.worker},
			Properties:  map[string]any{"arch": a.arch},
			Tags:        []string{"deb", a.arch},
			Steps:       packageSteps(o, a.arch, archive, chroots),
		})
		names = append(names, a.builder)
	}

	database := "state.sqlite"
	if url := s[secretDatabaseURL]; url != "" {
		if _, ok := ci.DatabaseDriver(url); !ok {
			return ci.MasterConfig{}, fmt.Errorf("%s is not a postgres:// or postgresql:// URL", secretDatabaseURL)
		}
		database = url
	}
	admin, password := s[secretAdminUser], s[secretAdminPassword]
	// Prometheus alone reads the metrics, on an address of their own.
	col := &metrics.Collector{Addr: o.MetricsAddr}
	cfg := ci.MasterConfig{
		Title:     "Ideascube",
		TitleURL:  "https://github.com/ideascube",
		PublicURL: o.PublicURL,
		BaseDir:   o.BaseDir,
		Database:  database,
		Builders:  builders,
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
			&remote.Listener{Addr: o.WorkerAddr, CertFile: o.WorkerCert, KeyFile: o.WorkerKey},
			col,
			archive,
			&webui.Server{
				Addr: o.HTTPAddr,
				Options: webui.Options{
					Auth:  &webui.BasicAuth{Users: map[string]string{admin: password}, AllowPlain: !isBcrypt(password), Realm: "Ideascube"},
					Authz: webui.Authz{Force: webui.LoggedIn, Stop: webui.LoggedIn},
				},
				Mounts: map[string]http.Handler{
					archivePath + "/": http.StripPrefix(archivePath, archive),
				},
			},
		},
	}
	for _, w := range workers {
		cfg.Workers = append(cfg.Workers, ci.WorkerConfig{Name: w.name, Password: s[workerSecret(w.name)],
			Properties: map[string]any{"dput_method": w.dputMethod}})
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

// isTag reports whether the build is of a tag (or of a branch other than
// master): its name must then be a Debian version.
func isTag(ctx context.Context, s *ci.StepRun) (bool, error) {
	ss, _ := s.SourceStamp("")
	return ss.Branch != "" && ss.Branch != "master", nil
}

// packageSteps are the steps of the builder of arch: check that the tag
// is a Debian version, check it out (master when forced without one),
// refresh the sbuild chroot, build the package, check it with lintian,
// upload it with dput, and publish the upload in the master's archive.
func packageSteps(o options, arch string, archive *debian.Archive, chroots chrootLocks) []ci.Step {
	halt := func(name string) ci.StepOptions { return ci.StepOptions{Name: name, HaltOnFailure: true} }
	build := &debian.Sbuild{
		StepOptions:  halt("sbuild"),
		Distribution: o.Dist,
		// Each source package and architecture-independent package is
		// built once, on the main architecture's builder.
		Source:           arch == mainArch,
		ArchAll:          arch == mainArch,
		CleanSource:      false,
		BuildDepResolver: o.Resolver,
	}
	// The chroot's architecture: the machine's own for a cross build.
	chrootArch := arch
	if slices.Contains(o.Cross, arch) {
		chrootArch = buildArch
		build.BuildArch, build.HostArch = buildArch, arch
	} else {
		build.Arch = arch
	}
	if o.ExtraRepository != "" {
		build.ExtraRepositories = []any{o.ExtraRepository}
	}
	var update ci.Step
	if o.Unshare {
		build.ChrootMode = debian.ModeUnshare
		if o.Tarballs != "" {
			build.Chroot = path.Join(o.Tarballs, o.Dist+"-"+chrootArch+".tar.zst")
		}
	} else {
		chroot := o.Dist + "-" + chrootArch + "-sbuild"
		build.Chroot = chroot
		// A worker that builds several architectures from one chroot
		// (cross builds) must not upgrade it while another build
		// upgrades it or builds from it: the upgrade takes the chroot's
		// lock whole, each sbuild one of its places.
		lock := chroots.get(chroot)
		update = &debian.SbuildUpdate{
			StepOptions: ci.StepOptions{Name: "sbuild-update", HaltOnFailure: true, Locks: []ci.LockAccess{lock.Exclusive()}},
			Chroot:      chroot,
			Sudo:        true,
		}
		build.Locks = []ci.LockAccess{lock.Counting()}
	}
	list := []ci.Step{
		&debian.CheckVersion{
			StepOptions: ci.StepOptions{Name: "version", HaltOnFailure: true, RunIf: isTag},
			Version:     ci.Interpolate("%(src::branch)s"),
			What:        "tag",
		},
		&steps.Git{
			RepoURL: o.Repo,
			Branch:  ci.Interpolate("%(src::branch:~master)s"),
			Mode:    steps.Incremental,
		},
	}
	if update != nil {
		list = append(list, update)
	}
	return append(list,
		build,
		&debian.Lintian{StepOptions: halt("lintian")},
		&debian.Dput{StepOptions: halt("dput"), Host: ci.Interpolate("%(prop:dput_method)s")},
		&debian.Publish{StepOptions: halt("publish"), Archive: archive, Distribution: o.Dist},
	)
}

// chrootLocks are the per-worker locks of the schroot chroots, by name.
type chrootLocks map[string]*ci.Lock

// chrootBuilds is how many builds may use one chroot at once.
const chrootBuilds = 8

func (c chrootLocks) get(chroot string) *ci.Lock {
	if c[chroot] == nil {
		c[chroot] = ci.WorkerLock("chroot "+chroot, chrootBuilds)
	}
	return c[chroot]
}

// isBcrypt reports whether a password is given as a bcrypt hash.
func isBcrypt(s string) bool {
	return strings.HasPrefix(s, "$2a$") || strings.HasPrefix(s, "$2b$") || strings.HasPrefix(s, "$2y$")
}
