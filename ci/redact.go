package ci

import (
	"context"
	"encoding/base64"
	"log/slog"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
)

// MinSecretLength is the shortest secret value a Redactor hides: shorter
// values would blank unrelated text (a password "1234" in every build
// number). Such secrets are still given to builds; keep them long.
const MinSecretLength = 6

// A Redactor hides secret values in text, replacing each by "<name>": the
// value itself, each of its lines, its base64 (standard and URL alphabets,
// at every alignment within longer base64 text), URL-escaped and
// shell-quoted forms. The master has one, fed with every secret a build
// reads, and runs it over step logs, stored properties, step and build
// states, error messages and its own log. It is safe for concurrent use.
type Redactor struct {
	mu       sync.Mutex
	names    map[string]string // form -> name
	replacer atomic.Pointer[strings.Replacer]
}

// Add registers a secret's value. Values shorter than MinSecretLength are
// ignored.
func (r *Redactor) Add(name, value string) {
	forms := secretForms(value)
	if len(forms) == 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.names == nil {
		r.names = map[string]string{}
	}
	changed := false
	for _, f := range forms {
		if _, ok := r.names[f]; !ok {
			r.names[f] = name
			changed = true
		}
	}
	if !changed {
		return
	}
	// Longest forms first, so that a form is never cut by a shorter one.
	keys := make([]string, 0, len(r.names))
	for f := range r.names {
		keys = append(keys, f)
	}
	slices.SortFunc(keys, func(a, b string) int {
		if len(a) != len(b) {
			return len(b) - len(a)
		}
		return strings.Compare(a, b)
	})
	pairs := make([]string, 0, 2*len(keys))
	for _, f := range keys {
		pairs = append(pairs, f, "<"+r.names[f]+">")
	}
	r.replacer.Store(strings.NewReplacer(pairs...))
}

// Redact returns s with every secret form replaced by "<name>".
func (r *Redactor) Redact(s string) string {
	if r == nil {
		return s
	}
	rep := r.replacer.Load()
	if rep == nil {
		return s
	}
	return rep.Replace(s)
}

// RedactValue redacts the strings in a property value (lists and maps
// included), returning a copy if anything changed.
func (r *Redactor) RedactValue(v any) any {
	if r == nil || r.replacer.Load() == nil {
		return v
	}
	switch x := v.(type) {
	case string:
		return r.Redact(x)
	case []string:
		out := make([]string, len(x))
		for i, s := range x {
			out[i] = r.Redact(s)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = r.RedactValue(e)
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = r.RedactValue(e)
		}
		return out
	}
	return v
}

// RedactProperties returns a copy of p with its values redacted.
func (r *Redactor) RedactProperties(p Properties) Properties {
	if r == nil || r.replacer.Load() == nil {
		return p
	}
	out := make(Properties, len(p))
	for k, v := range p {
		out[k] = Property{Value: r.RedactValue(v.Value), Source: v.Source}
	}
	return out
}

// secretForms returns the forms of a value to hide, each at least
// MinSecretLength long.
func secretForms(value string) []string {
	if len(value) < MinSecretLength {
		return nil
	}
	set := map[string]bool{}
	add := func(s string) {
		if len(s) >= MinSecretLength {
			set[s] = true
		}
	}
	add(value)
	for _, line := range strings.Split(value, "\n") {
		add(strings.TrimSuffix(line, "\r"))
	}
	add(url.QueryEscape(value))
	add(url.PathEscape(value))
	add(ShellQuote(value))
	add(strings.ReplaceAll(value, "'", `'\''`))
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding} {
		for _, f := range base64Forms(enc, value) {
			add(f)
		}
	}
	out := make([]string, 0, len(set))
	for f := range set {
		out = append(out, f)
	}
	return out
}

// base64Forms returns, for each of the three alignments value can have in
// longer encoded data, the part of its encoding that does not depend on
// the bytes around it.
func base64Forms(enc *base64.Encoding, value string) []string {
	var forms []string
	for pad := range 3 {
		data := strings.Repeat("\x00", pad) + value
		e := enc.EncodeToString([]byte(data))
		// The first character affected only by value's bytes: skip those
		// that mix in the padding.
		start := (pad*8 + 5) / 6
		// The last complete 6-bit group made of value's bytes only.
		end := (len(data) * 8) / 6
		if start < end && end <= len(e) {
			forms = append(forms, e[start:end])
		}
	}
	return forms
}

// redactHandler redacts the messages and string attributes of a log.
type redactHandler struct {
	inner slog.Handler
	r     *Redactor
}

func (h redactHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.inner.Enabled(ctx, l)
}

func (h redactHandler) Handle(ctx context.Context, rec slog.Record) error {
	if h.r.replacer.Load() == nil {
		return h.inner.Handle(ctx, rec)
	}
	out := slog.NewRecord(rec.Time, rec.Level, h.r.Redact(rec.Message), rec.PC)
	rec.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(h.redactAttr(a))
		return true
	})
	return h.inner.Handle(ctx, out)
}

func (h redactHandler) redactAttr(a slog.Attr) slog.Attr {
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString:
		return slog.String(a.Key, h.r.Redact(v.String()))
	case slog.KindGroup:
		attrs := v.Group()
		out := make([]any, len(attrs))
		for i, g := range attrs {
			out[i] = h.redactAttr(g)
		}
		return slog.Group(a.Key, out...)
	case slog.KindAny:
		if err, ok := v.Any().(error); ok {
			return slog.String(a.Key, h.r.Redact(err.Error()))
		}
		return slog.Any(a.Key, h.r.RedactValue(v.Any()))
	}
	return a
}

func (h redactHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	out := make([]slog.Attr, len(attrs))
	for i, a := range attrs {
		out[i] = h.redactAttr(a)
	}
	return redactHandler{inner: h.inner.WithAttrs(out), r: h.r}
}

func (h redactHandler) WithGroup(name string) slog.Handler {
	return redactHandler{inner: h.inner.WithGroup(name), r: h.r}
}
