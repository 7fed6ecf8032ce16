package webui

import (
	"html"
	"html/template"
	"strconv"
	"strings"
)

// The ANSI renderer of log pages. Kiln turns colour codes into HTML itself
// rather than with buildkite/terminal-to-html, the well-known Go library,
// because that library emulates a terminal screen: cursor movements and
// carriage returns rewrite what was written before, so the HTML of a line
// depends on the lines before it. Kiln renders each stored line on its
// own (a page shows a window of a log, the live view appends lines as
// they come, chunks are laid out apart), and keeps only what a line can
// say by itself: the 16 colours, bold, faint, italic and underline, as
// classes of kiln.css (the pages' Content-Security-Policy allows the
// site's own stylesheet only); every other sequence is dropped. That is
// about 150 lines, and FuzzANSI checks that whatever a log holds comes out
// escaped, in balanced spans of known classes.

// renderLog renders stored log lines (each ending in "\n") as HTML, one
// <span class="ln ..."> per line: text is escaped first, then the ANSI
// colour codes (SGR sequences) it held become classes of nested spans, and
// any other escape sequence is dropped. Lines of stream logs start with a
// letter naming their stream (o stdout, e stderr, h header), which becomes
// the line's class.
func renderLog(text string, stream bool) template.HTML {
	return renderLines(text, stream, 0)
}

// logChunk is how many lines a page's log block holds in each chunk. The
// stylesheet makes chunks blocks with content-visibility: auto, so that a
// browser lays out and paints only the chunks in view, and lays out again
// only the chunks that change when lines are added or dropped. static/kiln.js
// makes chunks of the same size.
const logChunk = 100

// renderChunks is renderLog with the lines in <span class="chunk">s of
// logChunk lines, for a page's log block.
func renderChunks(text string, stream bool) template.HTML {
	return renderLines(text, stream, logChunk)
}

// renderLines renders lines, in chunks of chunk lines unless chunk is 0.
func renderLines(text string, stream bool, chunk int) template.HTML {
	var b strings.Builder
	b.Grow(len(text) + len(text)/4)
	n := 0
	for line := range strings.SplitAfterSeq(text, "\n") {
		if line == "" {
			continue // the piece after the last "\n"
		}
		if chunk > 0 && n%chunk == 0 {
			if n > 0 {
				b.WriteString("</span>")
			}
			b.WriteString(`<span class="chunk">`)
		}
		n++
		line = strings.TrimSuffix(line, "\n")
		cls := "o"
		if stream && line != "" {
			switch line[0] {
			case 'e':
				cls = "e"
			case 'h':
				cls = "h"
			}
			line = line[1:]
		}
		b.WriteString(`<span class="ln `)
		b.WriteString(cls)
		b.WriteString(`">`)
		renderANSI(&b, line)
		b.WriteString("</span>\n")
	}
	if chunk > 0 && n > 0 {
		b.WriteString("</span>")
	}
	return template.HTML(b.String())
}

// ansiState is the graphic rendition in force.
type ansiState struct {
	bold, faint, italic, underline bool
	fg, bg                         int // 0 none, 1..16 the 16 colours (30-37 and 90-97 as 1..16)
}

func (s ansiState) classes() string {
	var c []string
	if s.bold {
		c = append(c, "ab")
	}
	if s.faint {
		c = append(c, "af")
	}
	if s.italic {
		c = append(c, "ai")
	}
	if s.underline {
		c = append(c, "au")
	}
	if s.fg != 0 {
		c = append(c, "fg"+strconv.Itoa(s.fg-1))
	}
	if s.bg != 0 {
		c = append(c, "bg"+strconv.Itoa(s.bg-1))
	}
	return strings.Join(c, " ")
}

// renderANSI writes line as escaped HTML with its colours as spans. The
// colours of a line do not carry over to the next: each line is rendered
// on its own, so that any piece of a log renders the same.
func renderANSI(b *strings.Builder, line string) {
	var st ansiState
	open := false
	setState := func(ns ansiState) {
		if ns == st {
			return
		}
		if open {
			b.WriteString("</span>")
			open = false
		}
		st = ns
		if c := st.classes(); c != "" {
			b.WriteString(`<span class="` + c + `">`)
			open = true
		}
	}
	for line != "" {
		i := strings.IndexByte(line, 0x1b)
		if i < 0 {
			b.WriteString(html.EscapeString(line))
			break
		}
		b.WriteString(html.EscapeString(line[:i]))
		line = line[i:]
		// CSI: ESC [ params final; OSC (a window title): ESC ] text, ended
		// by BEL or ESC \; anything else: ESC and one character.
		if len(line) >= 2 && line[1] == ']' {
			rest := line[2:]
			k := strings.IndexAny(rest, "\a\x1b")
			if k < 0 {
				break // an unfinished sequence ends the line
			}
			line = rest[k+1:]
			if rest[k] == 0x1b {
				line = strings.TrimPrefix(line, "\\")
			}
			continue
		}
		if len(line) < 2 || line[1] != '[' {
			line = line[min(2, len(line)):]
			continue
		}
		j := 2
		for j < len(line) && (line[j] >= '0' && line[j] <= '9' || line[j] == ';' || line[j] == ':' || line[j] == '?') {
			j++
		}
		if j == len(line) {
			break // an unfinished sequence ends the line
		}
		final, params := line[j], line[2:j]
		line = line[j+1:]
		if final != 'm' {
			continue
		}
		setState(applySGR(st, params))
	}
	if open {
		b.WriteString("</span>")
	}
}

// applySGR applies the parameters of one SGR sequence ("1;31").
// Extended colours (38;5;n and 38;2;r;g;b) are skipped.
func applySGR(st ansiState, params string) ansiState {
	if params == "" {
		return ansiState{}
	}
	codes := strings.FieldsFunc(params, func(r rune) bool { return r == ';' || r == ':' })
	for i := 0; i < len(codes); i++ {
		n, err := strconv.Atoi(codes[i])
		if err != nil {
			continue
		}
		switch {
		case n == 0:
			st = ansiState{}
		case n == 1:
			st.bold = true
		case n == 2:
			st.faint = true
		case n == 3:
			st.italic = true
		case n == 4:
			st.underline = true
		case n == 22:
			st.bold, st.faint = false, false
		case n == 23:
			st.italic = false
		case n == 24:
			st.underline = false
		case n >= 30 && n <= 37:
			st.fg = n - 30 + 1
		case n >= 90 && n <= 97:
			st.fg = n - 90 + 8 + 1
		case n == 39:
			st.fg = 0
		case n >= 40 && n <= 47:
			st.bg = n - 40 + 1
		case n >= 100 && n <= 107:
			st.bg = n - 100 + 8 + 1
		case n == 49:
			st.bg = 0
		case n == 38 || n == 48:
			// 38;5;n or 38;2;r;g;b: skip the colour's parameters.
			if i+1 < len(codes) && codes[i+1] == "5" {
				i += 2
			} else if i+1 < len(codes) && codes[i+1] == "2" {
				i += 4
			}
		}
	}
	return st
}
