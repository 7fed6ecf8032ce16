package debian

import (
	"context"
	"errors"
	"fmt"
	"path"
	"strings"

	"github.com/kilnci/kiln/ci"
	"github.com/kilnci/kiln/ci/steps"
)

// named gives options the step type's default name if they have none.
func named(o ci.StepOptions, name string) ci.StepOptions {
	if o.Name == "" {
		o.Name = name
	}
	return o
}

// checkField validates a field that takes a value or a renderable.
func checkField(name string, v any) error {
	if err := ci.CheckValue(v); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// required validates a field that must be set.
func required(name string, v any) error {
	if v == nil {
		return fmt.Errorf("%s is not set", name)
	}
	if s, ok := v.(string); ok && strings.TrimSpace(s) == "" {
		return fmt.Errorf("%s is empty", name)
	}
	return checkField(name, v)
}

// renderSwitch renders an optional on/off field: nil leaves the tool's
// default (set is false); otherwise a bool, or a string such as "true",
// "yes", "1", "false", "no", "0". A value that is neither (a property
// saying "maybe") is a refusal.
func renderSwitch(ctx context.Context, s *ci.StepRun, name string, v any) (set, on bool, err error) {
	if v == nil {
		return false, false, nil
	}
	r, err := s.Render(ctx, v)
	if err != nil {
		return false, false, fmt.Errorf("%s: %w", name, err)
	}
	switch x := r.(type) {
	case nil:
		return false, false, nil
	case bool:
		return true, x, nil
	case string:
		switch strings.ToLower(strings.TrimSpace(x)) {
		case "":
			return false, false, nil
		case "true", "yes", "on", "1":
			return true, true, nil
		case "false", "no", "off", "0":
			return true, false, nil
		}
	}
	return false, false, refuse(fmt.Errorf("%s: %q is neither true nor false", name, ci.FormatValue(r)))
}

// renderOptional renders an optional string field ("" when nil).
func renderOptional(ctx context.Context, s *ci.StepRun, name string, v any) (string, error) {
	if v == nil {
		return "", nil
	}
	r, err := s.RenderString(ctx, v)
	if err != nil {
		return "", fmt.Errorf("%s: %w", name, err)
	}
	return r, nil
}

// renderList renders an optional list field (a string is a one-item
// list; empty strings are dropped).
func renderList(ctx context.Context, s *ci.StepRun, name string, v any) ([]string, error) {
	if v == nil {
		return nil, nil
	}
	l, err := s.RenderList(ctx, v)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	out := l[:0]
	for _, e := range l {
		if e != "" {
			out = append(out, e)
		}
	}
	return out, nil
}

// refusal is an error in what a build gave a step (a path leading out of
// the builder's folder, say): the step fails with it as its summary,
// rather than end in an exception.
type refusal struct{ error }

// refuse wraps err as a refusal.
func refuse(err error) error { return refusal{err} }

// refused reports whether err is a refusal, and sets the step's summary
// to it if so.
func refused(s *ci.StepRun, err error) bool {
	var r refusal
	if errors.As(err, &r) {
		s.SetStateString("refused: " + r.Error())
		return true
	}
	return false
}

// builderPath checks a path a step is given on the worker: relative to
// dir (itself relative to the builder's folder), it must stay within the
// builder's folder. An absolute path is taken if it lies within the
// builder's folder. It returns the path relative to the builder's folder.
func builderPath(s *ci.StepRun, dir, p string) (string, error) {
	if p == "" {
		return "", errors.New("the path is empty")
	}
	if strings.ContainsRune(p, 0) || strings.ContainsRune(p, '\\') {
		return "", fmt.Errorf("%q is not a plain path", p)
	}
	if path.IsAbs(p) {
		root := path.Clean(s.BuilderDir())
		clean := path.Clean(p)
		if clean != root && !strings.HasPrefix(clean, root+"/") {
			return "", fmt.Errorf("%q is outside the build folder %s", p, root)
		}
		rel := strings.TrimPrefix(strings.TrimPrefix(clean, root), "/")
		if rel == "" {
			rel = "."
		}
		return rel, nil
	}
	rel := path.Clean(path.Join(dir, p))
	if rel == ".." || strings.HasPrefix(rel, "../") || path.IsAbs(rel) {
		return "", fmt.Errorf("%q is outside the build folder", p)
	}
	return rel, nil
}

// relTo returns p (relative to the builder's folder) relative to dir
// (also relative to the builder's folder).
func relTo(dir, p string) string {
	dir = path.Clean(dir)
	if dir == "." {
		return p
	}
	up := strings.Repeat("../", strings.Count(dir, "/")+1)
	if strings.HasPrefix(p, dir+"/") {
		return strings.TrimPrefix(p, dir+"/")
	}
	return up + p
}

// runTool runs sh (an argument vector, as ShellCommand runs it) on the
// worker, its output in the step's "stdio" log and handed, a line at a
// time, to onLine (which may be nil). It returns the exit code. A remote
// failure (a program that could not start, say) is written to the log and
// returned as rc -1 with a nil error; an error is returned only when the
// framework could not run the command (a lost worker, a stopped build).
func runTool(ctx context.Context, s *ci.StepRun, sh *steps.ShellCommand, onLine func(stderr bool, line string)) (int, error) {
	cmd, err := sh.RemoteCommand(ctx, s)
	if err != nil {
		return -1, err
	}
	stdio, err := s.AddLog(ctx, "stdio", ci.LogStream)
	if err != nil {
		return -1, err
	}
	cmd.Stdio = stdio
	var out, errs lineSplitter
	if onLine != nil {
		out.emit = func(l string) { onLine(false, l) }
		errs.emit = func(l string) { onLine(true, l) }
		cmd.OnUpdate = func(key string, value any) {
			text, _ := value.(string)
			switch key {
			case ci.UpdateStdout:
				out.write(text)
			case ci.UpdateStderr:
				errs.write(text)
			}
		}
	}
	err = s.RunCommand(ctx, cmd)
	if onLine != nil {
		out.flush()
		errs.flush()
	}
	var ce *ci.CommandError
	if errors.As(err, &ce) {
		stdio.AddHeader(ce.Error() + "\n")
		return -1, nil
	}
	if err != nil {
		return -1, err
	}
	return cmd.RC, nil
}

// lineSplitter cuts a stream of text into lines.
type lineSplitter struct {
	partial strings.Builder
	emit    func(string)
}

// maxLine bounds the part of a line kept for the parsers: a line longer
// than this is cut (sbuild's package version lists run to a few kB).
const maxLine = 64 << 10

func (l *lineSplitter) write(text string) {
	for text != "" {
		i := strings.IndexByte(text, '\n')
		if i < 0 {
			if l.partial.Len() < maxLine {
				l.partial.WriteString(text[:min(len(text), maxLine-l.partial.Len())])
			}
			return
		}
		line := text[:i]
		if l.partial.Len() > 0 {
			if l.partial.Len() < maxLine {
				l.partial.WriteString(line[:min(len(line), maxLine-l.partial.Len())])
			}
			line = l.partial.String()
			l.partial.Reset()
		} else if len(line) > maxLine {
			line = line[:maxLine]
		}
		l.emit(strings.TrimSuffix(line, "\r"))
		text = text[i+1:]
	}
}

func (l *lineSplitter) flush() {
	if l.partial.Len() > 0 {
		l.emit(l.partial.String())
		l.partial.Reset()
	}
}
