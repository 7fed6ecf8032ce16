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

// Dput uploads the .changes a build produced, by default the one Sbuild
// set in the deb-changes property, to a host of dput's configuration
// (dput HOST FILE.changes). The .changes must lie within the builder's
// folder: a path leading elsewhere is refused before dput runs.
//
// The summary says what happened, from dput's output: uploaded, a host
// that is not in the configuration (naming the configuration files), an
// upload whose signature dput could not verify (an unsigned upload to a
// host without allow_unsigned_uploads: sign it, or set Unchecked), or an
// upload dput refuses to repeat (it keeps a FILE.HOST.upload record
// beside the .changes, and without Force uploads a version once: a second
// upload fails here, rather than passing while uploading nothing).
//
//	&debian.Dput{StepOptions: ci.StepOptions{HaltOnFailure: true}, Host: ci.Interpolate("%(prop:dput_method)s")}
type Dput struct {
	ci.StepOptions
	// Host is the host section of dput's configuration to upload to;
	// required. A string or a ci.Renderable, as every field below.
	Host any
	// Changes is the .changes file, relative to Workdir (the deb-changes
	// property if nil).
	Changes any
	// Config is dput's configuration file (-c); if empty, dput reads
	// /etc/dput.cf and ~/.dput.cf.
	Config any
	// Workdir is the folder dput runs in, relative to the builder's
	// folder (the builder's folder itself if nil).
	Workdir any
	// Force uploads even if dput has a record of an earlier upload (-f).
	// A bool, a "true"/"false" string or a renderable; off if nil.
	Force any
	// Unchecked skips dput's check of the upload's signature (-u), for
	// hosts that take unsigned uploads.
	Unchecked any
	// ExtraArgs are more arguments given to dput before the host, a list.
	ExtraArgs any
	// Env adds to dput's environment, as for steps.ShellCommand.
	Env map[string]any
	// Timeout kills dput after that long without output
	// (steps.DefaultTimeout if zero).
	Timeout time.Duration
}

// Options implements ci.Step, naming the step "dput" by default.
func (d *Dput) Options() ci.StepOptions { return named(d.StepOptions, "dput") }

// Validate checks the configuration.
func (d *Dput) Validate() error {
	errs := []error{required("Host", d.Host)}
	for name, v := range map[string]any{"Changes": d.Changes, "Config": d.Config, "Workdir": d.Workdir,
		"Force": d.Force, "Unchecked": d.Unchecked, "ExtraArgs": d.ExtraArgs} {
		errs = append(errs, checkField(name, v))
	}
	for k, v := range d.Env {
		errs = append(errs, checkField(fmt.Sprintf("Env[%q]", k), v))
	}
	return errors.Join(errs...)
}

var (
	dputNoHostRe   = regexp.MustCompile(`^No host (.*) found in config`)
	dputAlreadyRe  = regexp.MustCompile(`^Package has already been uploaded to (\S+) on (\S+)`)
	dputSuccessRe  = regexp.MustCompile(`^Successfully uploaded packages`)
	dputNoConfigRe = regexp.MustCompile(`^Error: Could not open any configfile`)
	// dputCheckingSigRe is what dput prints before it checks the
	// signature of the upload, which Unchecked (-u) skips.
	dputCheckingSigRe = regexp.MustCompile(`^Checking signature on \.changes`)
)

// Run implements ci.Step.
func (d *Dput) Run(ctx context.Context, s *ci.StepRun) (ci.Result, error) {
	host, err := renderOptional(ctx, s, "host", d.Host)
	if err != nil {
		return ci.Exception, err
	}
	changes := d.Changes
	if changes == nil {
		changes = ci.Prop(PropChanges)
	}
	file, err := renderOptional(ctx, s, "changes", changes)
	if err != nil {
		return ci.Exception, err
	}
	config, err := renderOptional(ctx, s, "config", d.Config)
	if err != nil {
		return ci.Exception, err
	}
	workdir, err := renderOptional(ctx, s, "workdir", d.Workdir)
	if err != nil {
		return ci.Exception, err
	}
	if workdir == "" {
		workdir = "."
	}
	switch {
	case host == "":
		s.SetStateString("no dput host given")
		return ci.Failure, nil
	case strings.HasPrefix(host, "-") || strings.ContainsAny(host, " \t\n/"):
		s.SetStateString(fmt.Sprintf("refused: %q is not a dput host name", host))
		return ci.Failure, nil
	case file == "":
		s.SetStateString("no .changes to upload: set Changes, or build with Sbuild first (it sets " + PropChanges + ")")
		return ci.Failure, nil
	case !strings.HasSuffix(file, ".changes"):
		s.SetStateString(fmt.Sprintf("refused: %q is not a .changes file", file))
		return ci.Failure, nil
	}
	if workdir, err = builderPath(s, ".", workdir); err != nil {
		s.SetStateString("refused: workdir " + err.Error())
		return ci.Failure, nil
	}
	rel, err := builderPath(s, workdir, file)
	if err != nil {
		s.SetStateString("refused: " + err.Error())
		return ci.Failure, nil
	}
	argv := []string{"dput"}
	if config != "" {
		argv = append(argv, "-c", config)
	}
	for _, sw := range []struct {
		name string
		v    any
		flag string
	}{{"force", d.Force, "-f"}, {"unchecked", d.Unchecked, "-u"}} {
		set, on, err := renderSwitch(ctx, s, sw.name, sw.v)
		if refused(s, err) {
			return ci.Failure, nil
		}
		if err != nil {
			return ci.Exception, err
		}
		if set && on {
			argv = append(argv, sw.flag)
		}
	}
	extra, err := renderList(ctx, s, "extra args", d.ExtraArgs)
	if err != nil {
		return ci.Exception, err
	}
	argv = append(argv, extra...)
	argv = append(argv, host, relTo(workdir, rel))

	name := path0(rel)
	s.SetStateString(fmt.Sprintf("uploading %s to %s", name, host))
	var noHost, noConfig, uploaded, checkingSig bool
	var already, lastErr, sigOut, sigErr string
	sh := &steps.ShellCommand{Command: argv, Workdir: workdir, Env: d.Env, Timeout: d.Timeout}
	rc, err := runTool(ctx, s, sh, func(stderr bool, line string) {
		switch {
		case dputNoHostRe.MatchString(line):
			noHost = true
		case dputNoConfigRe.MatchString(line):
			noConfig = true
		case dputAlreadyRe.MatchString(line):
			already = line
		case dputSuccessRe.MatchString(line):
			uploaded = true
		case dputCheckingSigRe.MatchString(line):
			checkingSig = true
		case checkingSig && strings.TrimSpace(line) != "" && !strings.HasPrefix(line, "Uploading "):
			// What follows "Checking signature" when the check fails:
			// gpgme's words on stdout ("gpgme_op_verify: GPGME: No
			// data"), gpg's on stderr, which may come first.
			if !stderr && sigOut == "" {
				sigOut = strings.TrimSpace(line)
			} else if stderr && sigErr == "" {
				sigErr = strings.TrimSpace(line)
			}
		case strings.TrimSpace(line) != "" && (stderr || strings.HasPrefix(line, "Error") || strings.Contains(line, "doesn't match")):
			if lastErr == "" || !strings.HasPrefix(lastErr, "Error") {
				lastErr = strings.TrimSpace(line)
			}
		}
	})
	if err != nil {
		return ci.Exception, err
	}
	configs := "/etc/dput.cf or ~/.dput.cf"
	if config != "" {
		configs = config
	}
	switch {
	case noHost:
		s.SetStateString(fmt.Sprintf("dput host %q is not defined in %s", host, configs))
		return ci.Failure, nil
	case noConfig:
		s.SetStateString(fmt.Sprintf("dput could not read its configuration %s", configs))
		return ci.Failure, nil
	case already != "":
		s.SetStateString(fmt.Sprintf("%s was already uploaded to %s (dput keeps %s.%s.upload): a version is uploaded once; raise the version, or set Force", name, host, strings.TrimSuffix(name, ".changes"), host))
		return ci.Failure, nil
	case rc != 0 && checkingSig && !uploaded:
		s.SetStateString(fmt.Sprintf("dput could not verify the signature of %s (%s): sign the upload, or set Unchecked for a host that takes unsigned uploads", name, firstNonEmpty(sigOut, sigErr)))
		return ci.Failure, nil
	case rc == 0 && uploaded:
		s.SetStateString(fmt.Sprintf("uploaded %s to %s", name, host))
		return ci.Success, nil
	case rc == 0:
		// dput said neither that it uploaded nor why not.
		s.SetStateString(fmt.Sprintf("dput exited 0 without saying it uploaded %s to %s", name, host))
		return ci.Warnings, nil
	}
	why := fmt.Sprintf("dput failed (exit code %d)", rc)
	if lastErr != "" {
		why += ": " + lastErr
	}
	s.SetStateString(why)
	return ci.Failure, nil
}
