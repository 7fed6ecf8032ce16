package debian

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/kilnci/kiln/ci"
)

// ValidVersion reports whether v is a Debian version, as Debian policy
// (§5.6.12) defines it: [epoch:]upstream_version[-debian_revision], where
// the epoch is a number, the upstream version starts with a digit and
// holds only letters, digits and . + ~ - (a hyphen only when a revision
// follows), and the revision holds only letters, digits and . + ~. The
// error says, in one line, what is wrong.
func ValidVersion(v string) error {
	if v == "" {
		return errors.New("the version is empty")
	}
	rest := v
	if epoch, after, ok := strings.Cut(v, ":"); ok {
		if epoch == "" || strings.Trim(epoch, "0123456789") != "" {
			return fmt.Errorf("the epoch %q before ':' must be a number", epoch)
		}
		rest = after
	}
	upstream, revision := rest, ""
	if i := strings.LastIndexByte(rest, '-'); i >= 0 {
		upstream, revision = rest[:i], rest[i+1:]
		if revision == "" {
			return errors.New("the Debian revision after the last '-' is empty")
		}
		if c, ok := badChar(revision, ".+~"); ok {
			return fmt.Errorf("the Debian revision %q may not contain %q", revision, c)
		}
	}
	if upstream == "" {
		return errors.New("the upstream version is empty")
	}
	if upstream[0] < '0' || upstream[0] > '9' {
		return fmt.Errorf("the upstream version %q must start with a digit", upstream)
	}
	if c, ok := badChar(upstream, ".+~-"); ok {
		return fmt.Errorf("the upstream version %q may not contain %q", upstream, c)
	}
	return nil
}

// badChar returns the first rune of s that is neither an ASCII letter nor
// a digit nor one of extra.
func badChar(s, extra string) (rune, bool) {
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		case strings.ContainsRune(extra, r):
		default:
			return r, true
		}
	}
	return 0, false
}

// CheckVersion fails at once when a value from outside, typically the tag
// a build was started for, is not a Debian version (see ValidVersion),
// before any program runs on the worker: put it first, with
// HaltOnFailure. It runs nothing on the worker.
//
//	&debian.CheckVersion{
//		StepOptions: ci.StepOptions{HaltOnFailure: true},
//		Version:     ci.Interpolate("%(src::branch)s"),
//		What:        "tag",
//	}
type CheckVersion struct {
	ci.StepOptions
	// Version is the value to check; a string or a ci.Renderable.
	// Required.
	Version any
	// What names the value in the summary ("tag", "version" if empty); a
	// string or a ci.Renderable.
	What any
	// Property, when set, is the build property set to the version once
	// it is known to be valid; a string or a ci.Renderable.
	Property any
}

// Options implements ci.Step, naming the step "version" by default.
func (c *CheckVersion) Options() ci.StepOptions { return named(c.StepOptions, "version") }

// Validate checks the configuration.
func (c *CheckVersion) Validate() error {
	if c.Version == nil {
		return errors.New("Version is not set")
	}
	return errors.Join(checkField("Version", c.Version), checkField("What", c.What), checkField("Property", c.Property))
}

// Run implements ci.Step.
func (c *CheckVersion) Run(ctx context.Context, s *ci.StepRun) (ci.Result, error) {
	v, err := s.RenderString(ctx, c.Version)
	if err != nil {
		return ci.Exception, fmt.Errorf("version: %w", err)
	}
	what, err := renderOptional(ctx, s, "what", c.What)
	if err != nil {
		return ci.Exception, err
	}
	if what == "" {
		what = "version"
	}
	prop, err := renderOptional(ctx, s, "property", c.Property)
	if err != nil {
		return ci.Exception, err
	}
	if err := ValidVersion(v); err != nil {
		s.SetStateString(fmt.Sprintf("%s %q is not a Debian version: %v", what, v, err))
		return ci.Failure, nil
	}
	if prop != "" {
		s.SetProperty(prop, v, s.Name()+" Step")
	}
	s.SetStateString(fmt.Sprintf("%s %s", what, v))
	return ci.Success, nil
}
