package debian

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/kilnci/kiln/ci"
	"github.com/kilnci/kiln/ci/steps"
)

// DefaultUpdateArgs are what SbuildUpdate asks of sbuild-update: refresh
// the package lists, upgrade, and clean the chroot's package cache.
var DefaultUpdateArgs = []string{"--update", "--dist-upgrade", "--clean", "--autoclean", "--autoremove"}

// SbuildUpdate refreshes a schroot chroot of sbuild
// (sbuild-update --update --dist-upgrade --clean --autoclean --autoremove
// CHROOT), through sudo when the worker's user may not do it alone
// (sudo -n: it fails at once rather than wait for a password). Chroots in
// unshare mode need no such step: sbuild updates them at each build.
//
// Two upgrades of one chroot at once fail (on debconf's or dpkg's lock):
// sbuild-update runs under flock(1) on a lock file of the machine, so that
// workers sharing a machine, or a cron job doing the same, take turns. To
// keep builds off a chroot while it is upgraded, give the builders that
// use it a ci.WorkerLock taken whole by this step and counted by Sbuild.
//
//	&debian.SbuildUpdate{Chroot: ci.Interpolate("jessie-%(prop:arch)s-sbuild"), Sudo: true}
type SbuildUpdate struct {
	ci.StepOptions
	// Chroot is the schroot chroot's name; required. A string or a
	// ci.Renderable, as every field below.
	Chroot any
	// Sudo runs sbuild-update through sudo -n: a bool, a "true"/"false"
	// string or a renderable; off if nil.
	Sudo any
	// Args replace DefaultUpdateArgs, a list.
	Args any
	// Env adds to the environment, as for steps.ShellCommand.
	Env map[string]any
	// Timeout kills sbuild-update after that long without output
	// (steps.DefaultTimeout if zero).
	Timeout time.Duration
	// LockFile is the file of the machine locked while sbuild-update runs
	// (a string or a renderable): DefaultUpdateLockDir/kiln-sbuild-update-
	// CHROOT.lock if nil, none if "". The step waits for it at most
	// UpdateLockWait.
	LockFile any
}

// DefaultUpdateLockDir holds SbuildUpdate's lock files: /run/lock, which
// every user may write to on Debian.
const DefaultUpdateLockDir = "/run/lock"

// UpdateLockWait bounds the wait for another upgrade of the same chroot.
const UpdateLockWait = time.Hour

// Options implements ci.Step, naming the step "sbuild-update" by default.
func (u *SbuildUpdate) Options() ci.StepOptions { return named(u.StepOptions, "sbuild-update") }

// Validate checks the configuration.
func (u *SbuildUpdate) Validate() error {
	errs := []error{required("Chroot", u.Chroot), checkField("Sudo", u.Sudo), checkField("Args", u.Args), checkField("LockFile", u.LockFile)}
	for k, v := range u.Env {
		errs = append(errs, checkField(fmt.Sprintf("Env[%q]", k), v))
	}
	return errors.Join(errs...)
}

var (
	updateNoChrootRe = regexp.MustCompile(`Chroot not found|Chroot for distribution \S+, architecture \S+ not found|No chroots are defined`)
	sudoPasswordRe   = regexp.MustCompile(`^sudo: (a password is required|.*not allowed|.*may not run)`)
)

// Run implements ci.Step.
func (u *SbuildUpdate) Run(ctx context.Context, s *ci.StepRun) (ci.Result, error) {
	chroot, err := renderOptional(ctx, s, "chroot", u.Chroot)
	if err != nil {
		return ci.Exception, err
	}
	if chroot == "" || strings.HasPrefix(chroot, "-") || strings.ContainsAny(chroot, " \t\n/") {
		s.SetStateString(fmt.Sprintf("refused: %q is not a chroot name", chroot))
		return ci.Failure, nil
	}
	set, sudo, err := renderSwitch(ctx, s, "sudo", u.Sudo)
	if refused(s, err) {
		return ci.Failure, nil
	}
	if err != nil {
		return ci.Exception, err
	}
	sudo = set && sudo
	args := DefaultUpdateArgs
	if u.Args != nil {
		if args, err = renderList(ctx, s, "args", u.Args); err != nil {
			return ci.Exception, err
		}
	}
	lock := DefaultUpdateLockDir + "/kiln-sbuild-update-" + chroot + ".lock"
	if u.LockFile != nil {
		if lock, err = renderOptional(ctx, s, "lock file", u.LockFile); err != nil {
			return ci.Exception, err
		}
	}
	var argv []string
	if lock != "" {
		argv = append(argv, "flock", "--wait", fmt.Sprint(int(UpdateLockWait.Seconds())), "--", lock)
	}
	if sudo {
		argv = append(argv, "sudo", "-n")
	}
	argv = append(argv, "sbuild-update")
	argv = append(argv, args...)
	argv = append(argv, chroot)

	s.SetStateString("updating " + chroot)
	var noChroot, noSudo bool
	var lastErr string
	sh := &steps.ShellCommand{Command: argv, Env: u.Env, Timeout: u.Timeout}
	rc, err := runTool(ctx, s, sh, func(stderr bool, line string) {
		switch {
		case updateNoChrootRe.MatchString(line):
			noChroot = true
		case sudoPasswordRe.MatchString(line):
			noSudo = true
			lastErr = line
		case strings.HasPrefix(line, "E: ") || stderr && strings.TrimSpace(line) != "" && lastErr == "":
			lastErr = line
		}
	})
	if err != nil {
		return ci.Exception, err
	}
	switch {
	case rc == 0:
		s.SetStateString("updated " + chroot)
		return ci.Success, nil
	case noSudo:
		s.SetStateString(fmt.Sprintf("sudo refused to run sbuild-update without a password (%s): allow the worker's user to run it, with a sudoers line such as: buildbot ALL=(root) NOPASSWD: /usr/bin/sbuild-update", lastErr))
		return ci.Failure, nil
	case noChroot:
		dist, arch := chrootParts(chroot)
		s.SetStateString(fmt.Sprintf("chroot %s not found; create it with: sudo sbuild-createchroot --arch=%s %s /srv/chroot/%s", chroot, arch, dist, chroot))
		return ci.Failure, nil
	}
	why := fmt.Sprintf("sbuild-update failed (exit code %d)", rc)
	if lastErr != "" {
		why += ": " + lastErr
	}
	s.SetStateString(why)
	return ci.Failure, nil
}

// chrootParts splits a DIST-ARCH-sbuild name.
func chrootParts(name string) (dist, arch string) {
	parts := strings.Split(strings.TrimSuffix(name, "-sbuild"), "-")
	if len(parts) >= 2 {
		return strings.Join(parts[:len(parts)-1], "-"), parts[len(parts)-1]
	}
	return name, "ARCH"
}
