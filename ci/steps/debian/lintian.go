package debian

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/kilnci/kiln/ci"
	"github.com/kilnci/kiln/ci/steps"
)

// The severities of lintian's tags, by the letter lintian prints first.
var severities = []struct {
	letter byte
	name   string // singular, as FailOn and WarnOn take it
	log    string // the log the tags of this severity go to
}{
	{'E', "error", "Lintian Errors"},
	{'W', "warning", "Lintian Warnings"},
	{'I', "info", "Lintian Info"},
	{'P', "pedantic", "Lintian Pedantic"},
	{'X', "experimental", "Lintian Experimental"},
	{'O', "overridden", "Lintian Overridden"},
	{'M', "masked", "Lintian Masked"},
	{'C', "classification", "Lintian Classification"},
}

// A LintianTag is one tag lintian reported.
type LintianTag struct {
	// Severity is "error", "warning", "info", "pedantic", "experimental",
	// "overridden", "masked" or "classification".
	Severity string
	// Package is the package it is about, with its kind when lintian
	// gives one ("kiln-hello source").
	Package string
	// Tag is the tag's name ("no-copyright-file").
	Tag string
	// Context is what follows the name, often a path in brackets.
	Context string
	// Line is the line lintian printed.
	Line string
}

var lintianRe = regexp.MustCompile(`^([EWIPXOMC]): (.+?): (\S+)(?: (.*))?$`)

// perlAtRe is where in lintian's source a message of its own was raised
// (" at /usr/share/lintian/lib/Lintian/Profile.pm line 595."): of no use
// to whoever reads the summary.
var perlAtRe = regexp.MustCompile(` at /\S+ line \d+\.?$`)

// ParseLintianLine returns the tag of one line of lintian's output, and
// whether the line is a tag (explanations, "N:" lines, are not).
func ParseLintianLine(line string) (LintianTag, bool) {
	m := lintianRe.FindStringSubmatch(line)
	if m == nil {
		return LintianTag{}, false
	}
	t := LintianTag{Package: m[2], Tag: m[3], Context: m[4], Line: line}
	for _, s := range severities {
		if s.letter == m[1][0] {
			t.Severity = s.name
		}
	}
	return t, true
}

// Lintian runs lintian on what a build produced, by default the .changes
// that Sbuild set in the deb-changes property, and judges the package by
// its tags: each severity is counted in the summary ("1 error
// (no-copyright-file), 2 warnings (...)") and its tags go to a log of
// their own ("Lintian Errors", "Lintian Warnings"...). Tags of a severity
// in FailOn fail the step, those in WarnOn make it WARNINGS. Lintian
// itself failing (a file it cannot read) is a FAILURE that says so.
//
//	&debian.Lintian{
//		StepOptions:  ci.StepOptions{HaltOnFailure: true},
//		SuppressTags: []string{"no-manual-page"},
//	}
type Lintian struct {
	ci.StepOptions
	// File is the .changes, .deb or .dsc to check, relative to Workdir
	// (the deb-changes property if nil); it must lie within the builder's
	// folder. A string or a ci.Renderable, as every field below.
	File any
	// Workdir is the folder lintian runs in, relative to the builder's
	// folder (the builder's folder itself if nil).
	Workdir any
	// SuppressTags are tags not reported (--suppress-tags), a list.
	SuppressTags any
	// Profile is lintian's vendor profile (--profile), e.g. "debian".
	Profile any
	// Info, Pedantic and Experimental also report tags of those
	// severities (-I, --pedantic, -E); ShowOverrides reports overridden
	// tags (--show-overrides). Each a bool, a "true"/"false" string or a
	// renderable; off if nil.
	Info, Pedantic, Experimental, ShowOverrides any
	// FailOn lists the severities that fail the step (["error"] if nil);
	// WarnOn those that make it WARNINGS (["warning"] if nil). Severities
	// are error, warning, info, pedantic, experimental, overridden,
	// masked and classification; an empty list means none. Each a
	// []string, or a renderable giving a list.
	FailOn, WarnOn any
	// ExtraArgs are more arguments given to lintian before File, a list.
	ExtraArgs any
	// Env adds to lintian's environment, as for steps.ShellCommand.
	Env map[string]any
	// Timeout kills lintian after that long without output
	// (steps.DefaultTimeout if zero).
	Timeout time.Duration
}

// Options implements ci.Step, naming the step "lintian" by default.
func (l *Lintian) Options() ci.StepOptions { return named(l.StepOptions, "lintian") }

// Validate checks the configuration.
func (l *Lintian) Validate() error {
	var errs []error
	for name, v := range map[string]any{"File": l.File, "Workdir": l.Workdir, "SuppressTags": l.SuppressTags,
		"Profile": l.Profile, "Info": l.Info, "Pedantic": l.Pedantic, "Experimental": l.Experimental,
		"ShowOverrides": l.ShowOverrides, "ExtraArgs": l.ExtraArgs} {
		errs = append(errs, checkField(name, v))
	}
	for field, v := range map[string]any{"FailOn": l.FailOn, "WarnOn": l.WarnOn} {
		errs = append(errs, checkField(field, v))
		if list, ok := v.([]string); ok {
			errs = append(errs, checkSeverities(field, list))
		}
	}
	for k, v := range l.Env {
		errs = append(errs, checkField(fmt.Sprintf("Env[%q]", k), v))
	}
	return errors.Join(errs...)
}

// checkSeverities reports the names of list that are not severities.
func checkSeverities(field string, list []string) error {
	var errs []error
	for _, s := range list {
		if !validSeverity(s) {
			errs = append(errs, fmt.Errorf("%s: %q is not a lintian severity (error, warning, info, pedantic, experimental, overridden, masked, classification)", field, s))
		}
	}
	return errors.Join(errs...)
}

func validSeverity(name string) bool {
	for _, s := range severities {
		if s.name == name {
			return true
		}
	}
	return false
}

// Run implements ci.Step.
func (l *Lintian) Run(ctx context.Context, s *ci.StepRun) (ci.Result, error) {
	file := l.File
	if file == nil {
		file = ci.Prop(PropChanges)
	}
	f, err := renderOptional(ctx, s, "file", file)
	if err != nil {
		return ci.Exception, err
	}
	workdir, err := renderOptional(ctx, s, "workdir", l.Workdir)
	if err != nil {
		return ci.Exception, err
	}
	if workdir == "" {
		workdir = "."
	}
	if workdir, err = builderPath(s, ".", workdir); err != nil {
		s.SetStateString("workdir " + err.Error())
		return ci.Failure, nil
	}
	if f == "" {
		s.SetStateString("no file to check: set File, or build with Sbuild first (it sets " + PropChanges + ")")
		return ci.Failure, nil
	}
	rel, err := builderPath(s, workdir, f)
	if err != nil {
		s.SetStateString("refused: " + err.Error())
		return ci.Failure, nil
	}
	failOn, err := severityList(ctx, s, "FailOn", l.FailOn, "error")
	if refused(s, err) {
		return ci.Failure, nil
	}
	warnOn, err := severityList(ctx, s, "WarnOn", l.WarnOn, "warning")
	if refused(s, err) {
		return ci.Failure, nil
	}
	argv := []string{"lintian"}
	for _, sw := range []struct {
		name string
		v    any
		flag string
	}{{"info", l.Info, "-I"}, {"pedantic", l.Pedantic, "--pedantic"}, {"experimental", l.Experimental, "-E"}, {"show overrides", l.ShowOverrides, "--show-overrides"}} {
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
	suppress, err := renderList(ctx, s, "suppress tags", l.SuppressTags)
	if err != nil {
		return ci.Exception, err
	}
	if len(suppress) > 0 {
		argv = append(argv, "--suppress-tags", strings.Join(suppress, ","))
	}
	profile, err := renderOptional(ctx, s, "profile", l.Profile)
	if err != nil {
		return ci.Exception, err
	}
	if profile != "" {
		argv = append(argv, "--profile", profile)
	}
	extra, err := renderList(ctx, s, "extra args", l.ExtraArgs)
	if err != nil {
		return ci.Exception, err
	}
	argv = append(argv, extra...)
	argv = append(argv, relTo(workdir, rel))

	s.SetStateString("checking " + path0(rel))
	var tags []LintianTag
	var lastErr string
	sh := &steps.ShellCommand{Command: argv, Workdir: workdir, Env: l.Env, Timeout: l.Timeout}
	rc, err := runTool(ctx, s, sh, func(stderr bool, line string) {
		if t, ok := ParseLintianLine(line); ok && !stderr {
			tags = append(tags, t)
		} else if stderr && strings.TrimSpace(line) != "" && !strings.Contains(line, "running with root privileges") &&
			line[0] != ' ' && line[0] != '\t' {
			// Indented lines follow a message of lintian's own (Perl's
			// stack trace): the message says what went wrong.
			lastErr = perlAtRe.ReplaceAllString(line, "")
		}
	})
	if err != nil {
		return ci.Exception, err
	}
	counts, err := l.writeLogs(ctx, s, tags)
	if err != nil {
		return ci.Exception, err
	}
	summary := lintianSummary(tags)
	fails, warns := false, false
	for sev, n := range counts {
		fails = fails || n > 0 && slices.Contains(failOn, sev)
		warns = warns || n > 0 && slices.Contains(warnOn, sev)
	}
	// lintian exits non-zero when it finds errors, and when it fails; a
	// failure of its own is one without an error tag.
	if rc != 0 && counts["error"] == 0 {
		why := fmt.Sprintf("lintian failed (exit code %d)", rc)
		if lastErr != "" {
			why += ": " + lastErr
		}
		s.SetStateString(why)
		return ci.Failure, nil
	}
	s.SetStateString(summary)
	switch {
	case fails:
		return ci.Failure, nil
	case warns:
		return ci.Warnings, nil
	}
	return ci.Success, nil
}

// severityList renders FailOn or WarnOn: def when nil.
func severityList(ctx context.Context, s *ci.StepRun, field string, v any, def string) ([]string, error) {
	if v == nil {
		return []string{def}, nil
	}
	list, err := renderList(ctx, s, field, v)
	if err != nil {
		return nil, refuse(err)
	}
	if err := checkSeverities(field, list); err != nil {
		return nil, refuse(err)
	}
	return list, nil
}

// path0 gives a path's last element.
func path0(p string) string {
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		return p[i+1:]
	}
	return p
}

// writeLogs writes each severity's tags to its log, and returns the count
// of tags by severity.
func (l *Lintian) writeLogs(ctx context.Context, s *ci.StepRun, tags []LintianTag) (map[string]int, error) {
	counts := map[string]int{}
	for _, sev := range severities {
		var b strings.Builder
		for _, t := range tags {
			if t.Severity == sev.name {
				counts[sev.name]++
				b.WriteString(t.Line + "\n")
			}
		}
		if b.Len() == 0 {
			continue
		}
		w, err := s.AddLog(ctx, sev.log, ci.LogText)
		if err != nil {
			return nil, err
		}
		w.AddStdout(b.String())
		if err := w.Close(); err != nil {
			return nil, err
		}
	}
	return counts, nil
}

// maxTagsShown bounds the tag names a summary lists for one severity.
const maxTagsShown = 3

// lintianSummary counts tags by severity, naming the first few of each:
// "1 error (no-copyright-file), 2 warnings (no-manual-page, ...)".
func lintianSummary(tags []LintianTag) string {
	var parts []string
	for _, sev := range severities {
		names := map[string]bool{}
		var order []string
		n := 0
		for _, t := range tags {
			if t.Severity != sev.name {
				continue
			}
			n++
			if !names[t.Tag] {
				names[t.Tag] = true
				order = append(order, t.Tag)
			}
		}
		if n == 0 {
			continue
		}
		word := sev.name
		if n > 1 && sev.name != "info" {
			word += "s"
		}
		if len(order) > maxTagsShown {
			order = append(order[:maxTagsShown], fmt.Sprintf("and %d more", len(names)-maxTagsShown))
		}
		parts = append(parts, fmt.Sprintf("%d %s (%s)", n, word, strings.Join(order, ", ")))
	}
	if len(parts) == 0 {
		return "lintian: no tags"
	}
	return "lintian: " + strings.Join(parts, ", ")
}
