package ci

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/kilnci/kiln/internal/pyvalue"
)

// Interpolation is a renderable string in Buildbot's Interpolate syntax; see
// Interpolate.
type Interpolation struct {
	format string
	kw     map[string]any
	parts  []interpPart
	err    error
}

// interpPart is a literal (lookup nil) or a substitution.
type interpPart struct {
	literal string
	sub     *substitution
}

type substitution struct {
	selector string // prop, src, worker, kw, secret
	codebase string // src only
	key      string
	mode     byte // '-', '~', '+', '?', '#'
	a, b     *Interpolation
}

var identRe = regexp.MustCompile(`^[\w._-]*$`)

// Interpolate returns a string rendered when the build runs, in the syntax of
// Buildbot's Interpolate:
//
//	%(prop:name)s              the property "name" ("" if not set)
//	%(prop:name:-text)s        text if the property is not set
//	%(prop:name:~text)s        text if it is not set or is false/empty
//	%(prop:name:+text)s        text if it is set, "" otherwise
//	%(prop:name:?|yes|no)s     yes if it is set, no otherwise (any delimiter)
//	%(prop:name:#?|yes|no)s    yes if it is set and true, no otherwise
//	%(src:codebase:attr)s      an attribute of the source stamp for a codebase
//	                           ("" is the default codebase): repository,
//	                           branch, revision, project, codebase
//	%(worker:key)s             an item of the worker's info, or "name"
//	%(kw:name)s                a keyword argument given to Interpolate
//	%(secret:name)s            a secret, from the master's secret providers
//	%%                         a percent sign
//
// The texts after :- :~ :+ :? are themselves interpolated. Keyword arguments
// come in name/value pairs, as with log/slog; values may be renderables:
//
//	ci.Interpolate("--dist=%(kw:dist)s", "dist", dist)
//
// A malformed format is reported by Validate (and so by the master's
// configuration check, before anything starts) and by Render.
func Interpolate(format string, kw ...any) *Interpolation {
	in := &Interpolation{format: format, kw: map[string]any{}}
	var errs []error
	if len(kw)%2 != 0 {
		errs = append(errs, fmt.Errorf("keyword arguments must come in name/value pairs, got %d values", len(kw)))
	}
	for i := 0; i+1 < len(kw); i += 2 {
		name, ok := kw[i].(string)
		if !ok {
			errs = append(errs, fmt.Errorf("keyword argument %d: name is a %T, not a string", i/2, kw[i]))
			continue
		}
		in.kw[name] = kw[i+1]
	}
	if err := in.parse(); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		in.err = fmt.Errorf("interpolate %q: %w", format, errors.Join(errs...))
	}
	return in
}

// newNested parses a replacement text, sharing the keywords of its parent.
func (in *Interpolation) newNested(format string) (*Interpolation, error) {
	n := &Interpolation{format: format, kw: in.kw}
	return n, n.parse()
}

// String returns the format.
func (in *Interpolation) String() string { return in.format }

// Validate reports a malformed format or keyword list.
func (in *Interpolation) Validate() error { return in.err }

func (in *Interpolation) parse() error {
	s := in.format
	var lit strings.Builder
	for i := 0; i < len(s); {
		c := s[i]
		if c != '%' {
			lit.WriteByte(c)
			i++
			continue
		}
		if i+1 >= len(s) {
			return errors.New("format ends with a lone %")
		}
		switch s[i+1] {
		case '%':
			lit.WriteByte('%')
			i += 2
			continue
		case '(':
		default:
			return fmt.Errorf("unsupported %%%c at offset %d (write %%%% for a percent sign)", s[i+1], i)
		}
		// %( key )s with balanced parentheses in key, as Python reads it.
		depth, j := 1, i+2
		for ; j < len(s) && depth > 0; j++ {
			switch s[j] {
			case '(':
				depth++
			case ')':
				depth--
			}
		}
		if depth > 0 {
			return fmt.Errorf("unclosed %%( at offset %d", i)
		}
		key := s[i+2 : j-1]
		if j >= len(s) || s[j] != 's' {
			return fmt.Errorf("%%(%s) must be followed by s", key)
		}
		sub, err := in.parseSubstitution(key)
		if err != nil {
			return err
		}
		if lit.Len() > 0 {
			in.parts = append(in.parts, interpPart{literal: lit.String()})
			lit.Reset()
		}
		in.parts = append(in.parts, interpPart{sub: sub})
		i = j + 1
	}
	if lit.Len() > 0 {
		in.parts = append(in.parts, interpPart{literal: lit.String()})
	}
	return nil
}

func (in *Interpolation) parseSubstitution(key string) (*substitution, error) {
	selector, arg, ok := strings.Cut(key, ":")
	if !ok {
		return nil, fmt.Errorf("substitution %%(%s)s has no selector (prop:, src:, worker:, kw:, secret:)", key)
	}
	sub := &substitution{selector: selector}
	var repl string
	var hasRepl bool
	switch selector {
	case "prop", "kw", "worker", "secret":
		sub.key, repl, hasRepl = strings.Cut(arg, ":")
		if selector != "worker" && selector != "secret" && !identRe.MatchString(sub.key) {
			return nil, fmt.Errorf("%s name %q in %%(%s)s must be alphanumeric", selector, sub.key, key)
		}
	case "src":
		var rest string
		sub.codebase, rest, ok = strings.Cut(arg, ":")
		if !ok {
			return nil, fmt.Errorf("%%(%s)s must give both codebase and attribute, as src:codebase:attr", key)
		}
		sub.key, repl, hasRepl = strings.Cut(rest, ":")
		if !identRe.MatchString(sub.codebase) || !identRe.MatchString(sub.key) {
			return nil, fmt.Errorf("codebase and attribute in %%(%s)s must be alphanumeric", key)
		}
	default:
		return nil, fmt.Errorf("invalid selector %q in %%(%s)s", selector, key)
	}
	if !hasRepl {
		repl = "-"
	}
	var err error
	switch {
	case strings.HasPrefix(repl, "-"), strings.HasPrefix(repl, "~"), strings.HasPrefix(repl, "+"):
		sub.mode = repl[0]
		sub.a, err = in.newNested(repl[1:])
	case strings.HasPrefix(repl, "?"), strings.HasPrefix(repl, "#?"):
		sub.mode = repl[0]
		t := strings.TrimPrefix(strings.TrimPrefix(repl, "#"), "?")
		if t == "" || t[0] == '(' {
			return nil, fmt.Errorf("ternary in %%(%s)s needs a delimiter other than '(' , as ?|yes|no", key)
		}
		yes, no, ok := splitBalanced(t[0], t[1:])
		if !ok {
			return nil, fmt.Errorf("ternary in %%(%s)s must have two parts separated by %q", key, t[0])
		}
		if sub.a, err = in.newNested(yes); err == nil {
			sub.b, err = in.newNested(no)
		}
	default:
		return nil, fmt.Errorf("invalid modifier %q in %%(%s)s (use :-, :~, :+, :? or :#?)", repl[:1], key)
	}
	if err != nil {
		return nil, fmt.Errorf("in %%(%s)s: %w", key, err)
	}
	return sub, nil
}

// splitBalanced splits s at the first delim outside parentheses.
func splitBalanced(delim byte, s string) (string, string, bool) {
	depth := 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '(':
			depth++
		case ')':
			depth--
			if depth < 0 {
				return "", "", false
			}
		}
		if depth == 0 && s[i] == delim {
			return s[:i], s[i+1:], true
		}
	}
	return "", "", false
}

// secretReader is implemented by Props that can read secrets.
type secretReader interface {
	Secret(ctx context.Context, name string) (string, error)
}

// Render implements Renderable; the result is a string.
func (in *Interpolation) Render(ctx context.Context, p Props) (any, error) {
	return in.render(ctx, p)
}

// RenderShell renders the format for use as a /bin/sh command line: every
// value substituted (a property, a source stamp attribute, a keyword, a
// secret) is quoted so that the shell takes it as one literal word, whatever
// it holds; the format's own text is left as written. Steps that run a
// shell string render an Interpolate this way, so that branch names, tags
// and other data from outside never become shell syntax.
func (in *Interpolation) RenderShell(ctx context.Context, p Props) (string, error) {
	return in.renderMode(ctx, p, true)
}

func (in *Interpolation) render(ctx context.Context, p Props) (string, error) {
	return in.renderMode(ctx, p, false)
}

func (in *Interpolation) renderMode(ctx context.Context, p Props, shell bool) (string, error) {
	if in.err != nil {
		return "", in.err
	}
	var b strings.Builder
	for _, part := range in.parts {
		if part.sub == nil {
			b.WriteString(part.literal)
			continue
		}
		s, err := in.substitute(ctx, p, part.sub, shell)
		if err != nil {
			return "", err
		}
		b.WriteString(s)
	}
	return b.String(), nil
}

func (in *Interpolation) lookup(ctx context.Context, p Props, sub *substitution) (any, bool, error) {
	switch sub.selector {
	case "prop":
		v, ok := p.Property(sub.key)
		return v, ok, nil
	case "kw":
		v, ok := in.kw[sub.key]
		if !ok {
			return nil, false, nil
		}
		v, err := Render(ctx, p, v)
		return v, true, err
	case "worker":
		name, info := p.Worker()
		if sub.key == "name" {
			return name, name != "", nil
		}
		v, ok := info[sub.key]
		return v, ok, nil
	case "src":
		ss, ok := p.SourceStamp(sub.codebase)
		if !ok {
			return nil, false, nil
		}
		switch sub.key {
		case "repository":
			return ss.Repository, true, nil
		case "branch":
			return ss.Branch, true, nil
		case "revision":
			return ss.Revision, true, nil
		case "project":
			return ss.Project, true, nil
		case "codebase":
			return ss.Codebase, true, nil
		case "ssid":
			return ss.ID, true, nil
		}
		return nil, false, nil
	case "secret":
		sr, ok := p.(secretReader)
		if !ok {
			return nil, false, fmt.Errorf("interpolate %q: no secret provider for %%(secret:%s)s", in.format, sub.key)
		}
		v, err := sr.Secret(ctx, sub.key)
		if err != nil {
			return nil, false, fmt.Errorf("interpolate %q: %w", in.format, err)
		}
		return v, true, nil
	}
	return nil, false, nil
}

func (in *Interpolation) substitute(ctx context.Context, p Props, sub *substitution, shell bool) (string, error) {
	v, ok, err := in.lookup(ctx, p, sub)
	if err != nil {
		return "", err
	}
	switch sub.mode {
	case '-':
		if !ok {
			return sub.a.renderMode(ctx, p, shell)
		}
	case '~':
		if !ok || !pyvalue.Truthy(v) {
			return sub.a.renderMode(ctx, p, shell)
		}
	case '+':
		if !ok {
			return "", nil
		}
		return sub.a.renderMode(ctx, p, shell)
	case '?':
		if ok {
			return sub.a.renderMode(ctx, p, shell)
		}
		return sub.b.renderMode(ctx, p, shell)
	case '#':
		if ok && pyvalue.Truthy(v) {
			return sub.a.renderMode(ctx, p, shell)
		}
		return sub.b.renderMode(ctx, p, shell)
	}
	if shell {
		return ShellQuote(FormatValue(v)), nil
	}
	return FormatValue(v), nil
}

// ShellQuote quotes s for /bin/sh so that it is read as one word with
// exactly that text.
func ShellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./=:,+@%", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
