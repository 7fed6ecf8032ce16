package command

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Python's repr, by hand. The header lines of a shell command show its
// arguments as Python prints them ("argv: [b'sh', b'-c', b'make']",
// "watching logfiles {}"), and masters and people read them; these
// functions write the same text. No Go library writes Python's repr: Go's
// own quoting (strconv.Quote, %q) always takes double quotes where Python
// takes single ones (and double ones only for a string with a single quote
// and no double one), escapes differently (\u0085 where Python writes
// \x85, \xff for a byte that is not UTF-8 where Python writes \udcff),
// and knows nothing of the b'' of bytes, of dicts, or of None, True and
// False; numbers follow Python's float repr (1e+16, 0.1). The rules kept
// are the few the worker's arguments need: str, bytes, lists, dicts with
// sorted keys, and numbers.

// pyRepr returns Python's repr of a decoded argument value. Map keys are
// sorted (Python keeps the master's order, which decoding into a Go map
// loses).
func pyRepr(v any) string {
	var b strings.Builder
	writeRepr(&b, v)
	return b.String()
}

func writeRepr(b *strings.Builder, v any) {
	switch x := v.(type) {
	case nil:
		b.WriteString("None")
	case bool:
		if x {
			b.WriteString("True")
		} else {
			b.WriteString("False")
		}
	case string:
		b.WriteString(pyStr(x))
	case []byte:
		b.WriteString(pyBytes(x))
	case []any:
		b.WriteByte('[')
		for i, e := range x {
			if i > 0 {
				b.WriteString(", ")
			}
			writeRepr(b, e)
		}
		b.WriteByte(']')
	case []string:
		b.WriteByte('[')
		for i, e := range x {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(pyStr(e))
		}
		b.WriteByte(']')
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		b.WriteByte('{')
		for i, k := range keys {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(pyStr(k))
			b.WriteString(": ")
			writeRepr(b, x[k])
		}
		b.WriteByte('}')
	case map[string]string:
		m := make(map[string]any, len(x))
		for k, v := range x {
			m[k] = v
		}
		writeRepr(b, m)
	default:
		if n, ok := toNumber(v); ok {
			b.WriteString(n.String())
			return
		}
		fmt.Fprint(b, v)
	}
}

// pyStr returns Python's repr of a str.
func pyStr(s string) string {
	quote := byte('\'')
	if strings.IndexByte(s, '\'') >= 0 && strings.IndexByte(s, '"') < 0 {
		quote = '"'
	}
	var b strings.Builder
	b.Grow(len(s) + 2)
	b.WriteByte(quote)
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		i += size
		switch {
		case r == utf8.RuneError && size == 1:
			// Not UTF-8: Python would have a surrogate escape here.
			fmt.Fprintf(&b, `\udc%02x`, s[i-1])
		case r == '\\' || r == rune(quote):
			b.WriteByte('\\')
			b.WriteRune(r)
		case r == '\t':
			b.WriteString(`\t`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r < 0x80 && r >= 0x20 && r < 0x7f, r >= 0x80 && unicode.IsPrint(r):
			b.WriteRune(r)
		case r < 0x100:
			fmt.Fprintf(&b, `\x%02x`, r)
		case r < 0x10000:
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			fmt.Fprintf(&b, `\U%08x`, r)
		}
	}
	b.WriteByte(quote)
	return b.String()
}

// pyBytes returns Python's repr of a bytes value.
func pyBytes(s []byte) string {
	quote := byte('\'')
	if slices.Contains(s, '\'') && !slices.Contains(s, '"') {
		quote = '"'
	}
	var b strings.Builder
	b.Grow(len(s) + 3)
	b.WriteByte('b')
	b.WriteByte(quote)
	for _, c := range s {
		switch {
		case c == '\\' || c == quote:
			b.WriteByte('\\')
			b.WriteByte(c)
		case c == '\t':
			b.WriteString(`\t`)
		case c == '\n':
			b.WriteString(`\n`)
		case c == '\r':
			b.WriteString(`\r`)
		case c < 0x20 || c >= 0x7f:
			b.WriteString(`\x`)
			b.WriteString(strconv.FormatUint(uint64(c)>>4, 16))
			b.WriteString(strconv.FormatUint(uint64(c)&15, 16))
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte(quote)
	return b.String()
}

// pyBytesList returns Python's repr of a list of bytes values.
func pyBytesList(list []string) string {
	var b strings.Builder
	b.WriteByte('[')
	for i, s := range list {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(pyBytes([]byte(s)))
	}
	b.WriteByte(']')
	return b.String()
}

// shellQuote quotes argv for a posix shell as buildbot-worker's
// shell_quote does (shlex.quote, with "" for an empty argument).
func shellQuote(argv []string) string {
	var b strings.Builder
	for i, a := range argv {
		if i > 0 {
			b.WriteByte(' ')
		}
		switch {
		case a == "":
			b.WriteString(`""`)
		case strings.IndexFunc(a, shellUnsafe) < 0:
			b.WriteString(a)
		default:
			b.WriteByte('\'')
			b.WriteString(strings.ReplaceAll(a, `'`, `'"'"'`))
			b.WriteByte('\'')
		}
	}
	return b.String()
}

// shellUnsafe reports whether r needs quoting: shlex's [^\w@%+=:,./-] in
// ASCII mode.
func shellUnsafe(r rune) bool {
	switch {
	case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		return false
	}
	return !strings.ContainsRune("_@%+=:,./-", r)
}
