package debian

import (
	"context"
	"errors"
	"fmt"
	"path"
	"strings"
	"time"

	"github.com/kilnci/kiln/ci"
	"github.com/kilnci/kiln/ci/steps"
)

// The build properties Sbuild sets, with Buildbot's deb- prefix. Paths are
// relative to the builder's folder on the worker (the builddir property
// gives the folder itself).
const (
	PropPackage = "deb-package" // the source package's name
	PropVersion = "deb-version" // its version
	PropStatus  = "deb-status"  // sbuild's Status: successful, attempted...
	PropChanges = "deb-changes" // the .changes file of the build
	PropDebs    = "deb-files"   // the .deb (and .udeb) files built, a list
)

// The chroot modes of sbuild (--chroot-mode).
const (
	// ModeSchroot runs builds in schroot chroots, named by default
	// DIST-ARCH-sbuild and created with sbuild-createchroot; sbuild's
	// default.
	ModeSchroot = "schroot"
	// ModeUnshare runs builds, as an unprivileged user with subordinate
	// uid and gid ranges, in a chroot unpacked from a tarball that
	// mmdebstrap made (by default ~/.cache/sbuild/DIST-ARCH.tar.zst).
	ModeUnshare = "unshare"
)

// Sbuild builds a Debian package with sbuild in a clean chroot: by
// default the source tree checked out in Workdir, with its results
// written into the builder's folder.
//
// It reads sbuild's output as it arrives (all of it goes to the "stdio"
// log; sbuild is run with --verbose so that it prints its build log). The
// step's summary gives the package, its version and architecture, and
// sbuild's Status; when the build fails, the stage that failed (sbuild's
// Fail-Stage) and the line that says why, with the last lines of the
// failing stage in the "summary" log. A missing chroot is named, with the
// command that creates it. The step succeeds when sbuild exits 0 with
// Status successful.
//
// It sets the build properties deb-package, deb-version and deb-status,
// and on success deb-changes (the .changes file) and deb-files (the
// .deb files), paths relative to the builder's folder: Lintian and Dput
// take deb-changes by default.
//
// The Ideascube master builds its tag for each architecture in schroot
// chroots, as on its workers:
//
//	&debian.Sbuild{
//		StepOptions:  ci.StepOptions{HaltOnFailure: true},
//		Distribution: "jessie",
//		Arch:         ci.Interpolate("%(prop:arch)s"),
//		BuildDepResolver: "aptitude",
//		ExtraRepositories: []any{"deb http://archive.debian.org/debian jessie-backports main"},
//	}
//
// and a cross build for armhf on an amd64 machine, in unshare mode, is
//
//	&debian.Sbuild{Distribution: "bookworm", HostArch: "armhf", ChrootMode: debian.ModeUnshare}
type Sbuild struct {
	ci.StepOptions
	// Distribution is the distribution to build for (--dist); sbuild's
	// default if empty. A string or a ci.Renderable, as every field below.
	Distribution any
	// Arch is the architecture to build for, natively (--arch): that of
	// the chroot too; the worker's if empty.
	Arch any
	// HostArch, when set, cross-builds for that architecture (--host):
	// armhf packages built in an amd64 chroot. Give BuildArch, not Arch,
	// with it.
	HostArch any
	// BuildArch is the architecture of the chroot of a cross build
	// (--build); the worker's if empty.
	BuildArch any
	// ChrootMode is sbuild's chroot mode (ModeSchroot, ModeUnshare, or
	// another that sbuild knows); sbuild's configured default if empty.
	ChrootMode any
	// Chroot is the chroot (--chroot): a schroot name such as
	// "jessie-amd64-sbuild", or in unshare mode a tarball's path or name.
	// If empty, sbuild's default for the distribution and architecture.
	Chroot any
	// ExtraRepositories are APT source lines added in the chroot
	// (--extra-repository), a list.
	ExtraRepositories any
	// ExtraRepositoryKeys are files of keys for them
	// (--extra-repository-key), a list.
	ExtraRepositoryKeys any
	// BuildDepResolver chooses how build dependencies are installed
	// (--build-dep-resolver): "apt", "aptitude", "aspcud", "xapt"...
	BuildDepResolver any
	// Source, ArchAll and ArchAny switch the source package, the
	// architecture-independent and the architecture-dependent binary
	// packages on or off (--source/--no-source, --arch-all/--no-arch-all,
	// --arch-any/--no-arch-any): a bool, a "true"/"false" string, or a
	// renderable giving one; nil leaves sbuild's default.
	Source, ArchAll, ArchAny any
	// CleanSource, when false, leaves out running debian/rules clean on
	// the worker before building the source package (--no-clean-source),
	// so that the worker needs no build tools of its own; nil leaves
	// sbuild's default (clean).
	CleanSource any
	// RunLintian lets sbuild run lintian itself (--run-lintian); by
	// default it does not (--no-run-lintian): the Lintian step does it
	// and counts the tags.
	RunLintian any
	// Package is what to build: a .dsc file or a source package name
	// (with _version), relative to Workdir. If empty, the unpacked source
	// tree in Workdir is built.
	Package any
	// Workdir is the folder sbuild runs in, relative to the builder's
	// folder ("build", where the Git step checks out, if nil).
	Workdir any
	// BuildDir is the folder, relative to the builder's folder, where
	// sbuild writes the packages, the .changes and its log (--build-dir):
	// the builder's folder if nil.
	BuildDir any
	// ExtraArgs are more arguments given to sbuild before Package, a list.
	ExtraArgs any
	// Env adds to sbuild's environment (DEB_BUILD_OPTIONS, say), as for
	// steps.ShellCommand.
	Env map[string]any
	// Timeout kills sbuild after that long without output
	// (steps.DefaultTimeout if zero); MaxTime after that long in all (no
	// limit if zero).
	Timeout, MaxTime time.Duration
}

// Options implements ci.Step, naming the step "sbuild" by default.
func (b *Sbuild) Options() ci.StepOptions { return named(b.StepOptions, "sbuild") }

// Validate checks the configuration.
func (b *Sbuild) Validate() error {
	fields := []struct {
		name string
		v    any
	}{
		{"Distribution", b.Distribution}, {"Arch", b.Arch}, {"HostArch", b.HostArch}, {"BuildArch", b.BuildArch},
		{"ChrootMode", b.ChrootMode}, {"Chroot", b.Chroot}, {"ExtraRepositories", b.ExtraRepositories},
		{"ExtraRepositoryKeys", b.ExtraRepositoryKeys}, {"BuildDepResolver", b.BuildDepResolver},
		{"Source", b.Source}, {"ArchAll", b.ArchAll}, {"ArchAny", b.ArchAny}, {"CleanSource", b.CleanSource},
		{"RunLintian", b.RunLintian}, {"Package", b.Package}, {"Workdir", b.Workdir}, {"BuildDir", b.BuildDir},
		{"ExtraArgs", b.ExtraArgs},
	}
	var errs []error
	for _, f := range fields {
		errs = append(errs, checkField(f.name, f.v))
	}
	for k, v := range b.Env {
		errs = append(errs, checkField(fmt.Sprintf("Env[%q]", k), v))
	}
	return errors.Join(errs...)
}

// sbuildArgs is an Sbuild rendered for one build.
type sbuildArgs struct {
	argv                      []string
	dist, arch, host, build   string
	mode                      string
	chroot                    string
	workdir, buildDir         string // relative to the builder's folder
	workerBuildDir            string // absolute, on the worker
	extraRepos, extraRepoKeys []string
}

// render computes the command for the build of s.
func (b *Sbuild) render(ctx context.Context, s *ci.StepRun) (*sbuildArgs, error) {
	a := &sbuildArgs{}
	var err error
	str := func(name string, v any) string {
		if err != nil {
			return ""
		}
		var r string
		r, err = renderOptional(ctx, s, name, v)
		return r
	}
	a.dist = str("distribution", b.Distribution)
	a.arch = str("arch", b.Arch)
	a.host = str("host arch", b.HostArch)
	a.build = str("build arch", b.BuildArch)
	a.mode = str("chroot mode", b.ChrootMode)
	a.chroot = str("chroot", b.Chroot)
	resolver := str("build-dep resolver", b.BuildDepResolver)
	pkg := str("package", b.Package)
	workdir := str("workdir", b.Workdir)
	buildDir := str("build dir", b.BuildDir)
	if err != nil {
		return nil, err
	}
	if a.host != "" && a.arch != "" && a.arch != a.host {
		return nil, refuse(fmt.Errorf("arch %s and host arch %s differ: a cross build gives BuildArch and HostArch", a.arch, a.host))
	}
	if a.extraRepos, err = renderList(ctx, s, "extra repositories", b.ExtraRepositories); err != nil {
		return nil, err
	}
	if a.extraRepoKeys, err = renderList(ctx, s, "extra repository keys", b.ExtraRepositoryKeys); err != nil {
		return nil, err
	}
	extra, err := renderList(ctx, s, "extra args", b.ExtraArgs)
	if err != nil {
		return nil, err
	}
	if workdir == "" {
		workdir = steps.DefaultWorkdir
	}
	if a.workdir, err = builderPath(s, ".", workdir); err != nil {
		return nil, refuse(fmt.Errorf("workdir %w", err))
	}
	if buildDir == "" {
		buildDir = "."
	}
	if a.buildDir, err = builderPath(s, ".", buildDir); err != nil {
		return nil, refuse(fmt.Errorf("build dir %w", err))
	}
	_, info := s.Worker()
	a.workerBuildDir = info.JoinPath(s.BuilderDir(), a.buildDir)

	argv := []string{"sbuild", "--verbose"}
	opt := func(flag, v string) {
		if v != "" {
			argv = append(argv, flag+"="+v)
		}
	}
	opt("--dist", a.dist)
	opt("--arch", a.arch)
	opt("--build", a.build)
	opt("--host", a.host)
	opt("--chroot-mode", a.mode)
	opt("--chroot", a.chroot)
	opt("--build-dir", a.workerBuildDir)
	for _, r := range a.extraRepos {
		opt("--extra-repository", r)
	}
	for _, k := range a.extraRepoKeys {
		opt("--extra-repository-key", k)
	}
	opt("--build-dep-resolver", resolver)
	switches := []struct {
		name     string
		v        any
		on, off  string
		fallback string // when not set
	}{
		{"source", b.Source, "--source", "--no-source", ""},
		{"arch all", b.ArchAll, "--arch-all", "--no-arch-all", ""},
		{"arch any", b.ArchAny, "--arch-any", "--no-arch-any", ""},
		{"clean source", b.CleanSource, "--clean-source", "--no-clean-source", ""},
		{"run lintian", b.RunLintian, "--run-lintian", "--no-run-lintian", "--no-run-lintian"},
	}
	for _, sw := range switches {
		set, on, err := renderSwitch(ctx, s, sw.name, sw.v)
		if err != nil {
			return nil, err
		}
		switch {
		case set && on:
			argv = append(argv, sw.on)
		case set:
			argv = append(argv, sw.off)
		case sw.fallback != "":
			argv = append(argv, sw.fallback)
		}
	}
	argv = append(argv, extra...)
	if pkg != "" {
		if strings.HasPrefix(pkg, "-") {
			return nil, refuse(fmt.Errorf("package %q is not a package name nor a .dsc file", pkg))
		}
		argv = append(argv, pkg)
	}
	a.argv = argv
	return a, nil
}

// Run implements ci.Step.
func (b *Sbuild) Run(ctx context.Context, s *ci.StepRun) (ci.Result, error) {
	a, err := b.render(ctx, s)
	if refused(s, err) {
		return ci.Failure, nil
	}
	if err != nil {
		return ci.Exception, err
	}
	s.SetStateString("building" + describeTarget(a.arch, a.host))
	var p sbuildParser
	shown := ""
	sh := &steps.ShellCommand{Command: a.argv, Workdir: a.workdir, Env: b.Env, Timeout: b.Timeout, MaxTime: b.MaxTime}
	rc, err := runTool(ctx, s, sh, func(stderr bool, line string) {
		p.line(line)
		// The state follows sbuild's sections: "update chroot", "build"...
		if p.section != shown && !afterBuild[p.section] {
			shown = p.section
			s.SetStateString(fmt.Sprintf("building%s: %s", describeTarget(a.arch, a.host), strings.ToLower(p.section)))
		}
	})
	if err != nil {
		return ci.Exception, err
	}
	r := p.report()
	source := s.Name() + " Step"
	if r.Package != "" {
		s.SetProperty(PropPackage, r.Package, source)
	}
	if r.Version != "" {
		s.SetProperty(PropVersion, r.Version, source)
	}
	if r.Status != "" {
		s.SetProperty(PropStatus, r.Status, source)
	}
	ok := rc == 0 && r.Status == "successful"
	if ok {
		if c := r.MainChanges(); c != "" {
			s.SetProperty(PropChanges, path.Join(a.buildDir, c), source)
		}
		debs := []any{}
		for _, d := range r.Debs() {
			debs = append(debs, path.Join(a.buildDir, d))
		}
		s.SetProperty(PropDebs, debs, source)
	}
	summary := sbuildSummary(r, a, rc)
	s.SetStateString(summary)
	if err := writeSummaryLog(ctx, s, r, a, rc, ok); err != nil {
		return ci.Exception, err
	}
	switch {
	case ok:
		return ci.Success, nil
	case rc == 0 && r.Status == "":
		// An sbuild that says nothing of the build (a wrapper, a changed
		// output): it exited 0, but nothing here can be vouched for.
		return ci.Warnings, nil
	}
	return ci.Failure, nil
}

// describeTarget gives " for ARCH" or " for HOST (cross)".
func describeTarget(arch, host string) string {
	switch {
	case host != "":
		return " for " + host + " (cross)"
	case arch != "":
		return " for " + arch
	}
	return ""
}

// sbuildSummary is the step's one-line summary.
func sbuildSummary(r *SbuildReport, a *sbuildArgs, rc int) string {
	var b strings.Builder
	name := strings.TrimSpace(r.Package + " " + r.Version)
	if name == "" {
		name = "sbuild"
	}
	b.WriteString(name)
	arch := firstNonEmpty(r.HostArch, a.host, a.arch)
	if arch != "" {
		if r.BuildArch != "" && r.HostArch != "" && r.BuildArch != r.HostArch {
			arch += ", cross-built on " + r.BuildArch
		}
		b.WriteString(" (" + arch + ")")
	}
	b.WriteString(": ")
	switch {
	case r.Status == "":
		if rc == 0 {
			b.WriteString("sbuild exited 0 but printed no summary")
			return b.String()
		}
		fmt.Fprintf(&b, "sbuild failed (exit code %d) before building", rc)
	case r.Status == "successful" && rc == 0:
		n := len(r.Debs())
		fmt.Fprintf(&b, "successful, %d .deb", n)
		return b.String()
	default:
		b.WriteString(r.Status)
		if r.FailStage != "" {
			b.WriteString(", failed at stage " + r.FailStage)
		}
		if rc != 0 && r.Status == "successful" {
			fmt.Fprintf(&b, " but sbuild exited %d", rc)
		}
	}
	if r.MissingChroot != "" {
		fmt.Fprintf(&b, ": chroot %s not found; create it with: %s", r.MissingChroot, createChrootCommand(r, a))
		return b.String()
	}
	if l := r.FailingLine(); l != "" {
		b.WriteString(": " + l)
	}
	return b.String()
}

// createChrootCommand says how to create the chroot sbuild did not find.
func createChrootCommand(r *SbuildReport, a *sbuildArgs) string {
	dist := firstNonEmpty(r.Distribution, a.dist, "DIST")
	arch := firstNonEmpty(r.BuildArch, a.build, a.arch, "ARCH")
	name := r.MissingChroot
	if a.mode == ModeUnshare || strings.Contains(name, "/") || strings.Contains(name, ".tar") {
		target := name
		if !strings.Contains(target, "/") {
			target = "~/.cache/sbuild/" + dist + "-" + arch + ".tar.zst"
		}
		return fmt.Sprintf("mmdebstrap --variant=buildd --arch=%s %s %s", arch, dist, target)
	}
	cmd := fmt.Sprintf("sudo sbuild-createchroot --arch=%s", arch)
	if name != dist+"-"+arch+"-sbuild" {
		cmd += " --alias=" + name
	}
	return fmt.Sprintf("%s %s /srv/chroot/%s-%s-sbuild", cmd, dist, dist, arch)
}

// writeSummaryLog writes the "summary" log: what sbuild reported, and
// when it failed, the last lines of the failing stage.
func writeSummaryLog(ctx context.Context, s *ci.StepRun, r *SbuildReport, a *sbuildArgs, rc int, ok bool) error {
	w, err := s.AddLog(ctx, "summary", ci.LogText)
	if err != nil {
		return err
	}
	var b strings.Builder
	field := func(k, v string) {
		if v != "" {
			fmt.Fprintf(&b, "%s: %s\n", k, v)
		}
	}
	field("Package", r.Package)
	field("Version", r.Version)
	field("Distribution", r.Distribution)
	field("Host Architecture", r.HostArch)
	field("Build Architecture", r.BuildArch)
	field("Status", r.Status)
	field("Fail-Stage", r.FailStage)
	fmt.Fprintf(&b, "Exit code: %d\n", rc)
	if ok {
		field("Changes", path.Join(a.buildDir, r.MainChanges()))
		for _, f := range r.Files {
			field("File", path.Join(a.buildDir, f))
		}
	}
	if r.MissingChroot != "" {
		fmt.Fprintf(&b, "\nThe chroot %s was not found. Create it on the worker with:\n  %s\n", r.MissingChroot, createChrootCommand(r, a))
	}
	if !ok && len(r.Tail) > 0 {
		section := r.Section
		if section == "" {
			section = "sbuild's start"
		}
		fmt.Fprintf(&b, "\nLast lines of %s:\n", section)
		for _, l := range r.Tail {
			b.WriteString("  " + l + "\n")
		}
	}
	if len(r.Errors) > 0 && !ok {
		b.WriteString("\nsbuild's errors:\n")
		seen := map[string]bool{}
		for _, e := range r.Errors {
			if !seen[e] {
				seen[e] = true
				b.WriteString("  E: " + e + "\n")
			}
		}
	}
	w.AddStdout(b.String())
	return w.Close()
}

func firstNonEmpty(s ...string) string {
	for _, x := range s {
		if x != "" {
			return x
		}
	}
	return ""
}
