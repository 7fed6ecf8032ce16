package command

import (
	"fmt"
	"regexp"
	"strings"
	"sync"
)

// newlineFunc returns the function that turns the matches of the newline
// expression expr into "\n". The master's usual expression gets a
// hand-written version: Go's regexp has no lookahead, and output is on the
// hot path.
func newlineFunc(expr string) (func(string) string, error) {
	if expr == "" || expr == DefaultNewlineRE {
		return defaultNewline, nil
	}
	if f, ok := newlineCache.Load(expr); ok {
		return f.(func(string) string), nil
	}
	// "(?=.)" after "\r" keeps a carriage return at the end of the text
	// received so far: it may be the first half of "\r\n".
	goExpr := strings.ReplaceAll(expr, "(?=.)", "")
	lookahead := goExpr != expr
	re, err := regexp.Compile(goExpr)
	if err != nil {
		return nil, fmt.Errorf("newline expression %q: %w", expr, err)
	}
	f := func(s string) string {
		if lookahead && strings.HasSuffix(s, "\r") {
			return re.ReplaceAllLiteralString(s[:len(s)-1], "\n") + "\r"
		}
		return re.ReplaceAllLiteralString(s, "\n")
	}
	newlineCache.Store(expr, f)
	return f, nil
}

var newlineCache sync.Map // expression → func(string) string

// indexSpecial returns the index of the first "\r", ESC or backspace in
// s, or -1: three vectorised scans beat one strings.IndexAny.
func indexSpecial(s string) int {
	i := -1
	for _, c := range []byte{'\r', '\x1b', '\x08'} {
		if j := strings.IndexByte(s, c); j >= 0 && (i < 0 || j < i) {
			i = j
			s = s[:j] // later matches can only be nearer
		}
	}
	return i
}

// defaultNewline applies DefaultNewlineRE:
// (\r\n|\r(?=.)|\033\[u|\033\[[0-9]+;[0-9]+[Hf]|\033\[2J|\x08+).
func defaultNewline(s string) string {
	i := indexSpecial(s)
	if i < 0 {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	b.WriteString(s[:i])
	for i < len(s) {
		switch s[i] {
		case '\r':
			switch {
			case i+1 == len(s): // maybe the first half of "\r\n"
				b.WriteByte('\r')
				i++
			case s[i+1] == '\n':
				b.WriteByte('\n')
				i += 2
			default:
				b.WriteByte('\n')
				i++
			}
		case '\x1b':
			if n := escapeLen(s[i:]); n > 0 {
				b.WriteByte('\n')
				i += n
			} else {
				b.WriteByte('\x1b')
				i++
			}
		case '\x08':
			for i < len(s) && s[i] == '\x08' {
				i++
			}
			b.WriteByte('\n')
		default:
			j := indexSpecial(s[i:])
			if j < 0 {
				j = len(s) - i
			}
			b.WriteString(s[i : i+j])
			i += j
		}
	}
	return b.String()
}

// escapeLen returns the length of the terminal sequence s starts with that
// ends a line (ESC[u, ESC[n;mH, ESC[n;mf, ESC[2J), or 0.
func escapeLen(s string) int {
	if len(s) < 3 || s[1] != '[' {
		return 0
	}
	if s[2] == 'u' {
		return 3
	}
	digits := func(i int) int {
		j := i
		for j < len(s) && s[j] >= '0' && s[j] <= '9' {
			j++
		}
		return j - i
	}
	if n := digits(2); n > 0 {
		i := 2 + n
		if i < len(s) && s[i] == ';' {
			if m := digits(i + 1); m > 0 {
				j := i + 1 + m
				if j < len(s) && (s[j] == 'H' || s[j] == 'f') {
					return j + 1
				}
			}
		}
	}
	if strings.HasPrefix(s, "\x1b[2J") {
		return 4
	}
	return 0
}
