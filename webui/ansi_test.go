package webui

import (
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestRenderLog(t *testing.T) {
	for _, tt := range []struct {
		name   string
		text   string
		stream bool
		want   string
	}{
		{"Plain", "hello\n", false, `<span class="ln o">hello</span>` + "\n"},
		{"Streams", "ohello\neoops\nhrunning\n", true,
			`<span class="ln o">hello</span>` + "\n" + `<span class="ln e">oops</span>` + "\n" + `<span class="ln h">running</span>` + "\n"},
		{"EscapedFirst", "o<b>&\"'</b>\n", true, `<span class="ln o">&lt;b&gt;&amp;&#34;&#39;&lt;/b&gt;</span>` + "\n"},
		{"Colour", "\x1b[31mred\x1b[0m plain\n", false, `<span class="ln o"><span class="fg1">red</span> plain</span>` + "\n"},
		{"BoldBright", "\x1b[1;92mok\x1b[22m still green\x1b[39m\n", false,
			`<span class="ln o"><span class="ab fg10">ok</span><span class="fg10"> still green</span></span>` + "\n"},
		{"Background", "\x1b[37;41m FAIL \x1b[m\n", false, `<span class="ln o"><span class="fg7 bg1"> FAIL </span></span>` + "\n"},
		{"Extended", "\x1b[38;5;208morange\x1b[38;2;1;2;3mrgb\x1b[0m\n", false, `<span class="ln o">orangergb</span>` + "\n"},
		{"OtherSequences", "\x1b[2K\x1b[1Gprogress\x1b]0;title\a\n", false, `<span class="ln o">progress</span>` + "\n"},
		{"TitleEndedByST", "a\x1b]2;t\x1b\\b\n", false, `<span class="ln o">ab</span>` + "\n"},
		{"HTMLInsideColour", "\x1b[33m<script>\x1b[0m\n", false, `<span class="ln o"><span class="fg3">&lt;script&gt;</span></span>` + "\n"},
		{"Unfinished", "text\x1b[3\n", false, `<span class="ln o">text</span>` + "\n"},
		{"ColourEndsWithLine", "\x1b[31mred\nnext\n", false, `<span class="ln o"><span class="fg1">red</span></span>` + "\n" + `<span class="ln o">next</span>` + "\n"},
		{"EmptyLine", "\n", false, `<span class="ln o"></span>` + "\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, string(renderLog(tt.text, tt.stream)))
		})
	}
}

func TestRenderChunks(t *testing.T) {
	line := `<span class="ln o">x</span>` + "\n"
	for _, n := range []int{0, 1, logChunk - 1, logChunk, logChunk + 1, 2*logChunk + 3} {
		got := string(renderChunks(strings.Repeat("x\n", n), false))
		var want strings.Builder
		for i := range n {
			if i%logChunk == 0 {
				if i > 0 {
					want.WriteString("</span>")
				}
				want.WriteString(`<span class="chunk">`)
			}
			want.WriteString(line)
		}
		if n > 0 {
			want.WriteString("</span>")
		}
		assert.Equal(t, want.String(), got, "%d lines", n)
	}
}

// ansiTag is a tag renderLines writes; any other '<' in its output would
// be the log's own.
var ansiTag = regexp.MustCompile(`<span class="([^"<>]*)">|</span>`)

// ansiClass is a class renderLines writes.
var ansiClass = regexp.MustCompile(`^(ln|o|e|h|chunk|ab|af|ai|au|fg([0-9]|1[0-5])|bg([0-9]|1[0-5]))$`)

// FuzzANSI checks what renderLines promises of any log: the text is
// escaped (no '<', '>', quote or stray '&' of the log's own), the spans
// are balanced and of known classes, each line is one span, and no escape
// character reaches the page.
func FuzzANSI(f *testing.F) {
	for _, s := range []string{
		"hello\n", "ohello\neoops\nhrunning\n", "o<b>&\"'</b>\n",
		"\x1b[31mred\x1b[0m plain\n", "\x1b[1;92mok\x1b[22m still green\x1b[39m\n",
		"\x1b[37;41m FAIL \x1b[m\n", "\x1b[38;5;208morange\x1b[38;2;1;2;3mrgb\x1b[0m\n",
		"\x1b[2K\x1b[1Gprogress\x1b]0;title\a\n", "a\x1b]2;t\x1b\\b\n", "\x1b[33m<script>\x1b[0m\n",
		"text\x1b[3\n", "\x1b[31mred\nnext\n", "\n", "\x1b[1;2;3;4;31;42m&amp;\x1b[23;24;49;39mx\n",
		"no newline", "\xff\xfe\x1b[\x1b]\x1b",
	} {
		f.Add(s, false, 0)
		f.Add(s, true, 1)
	}
	f.Fuzz(func(t *testing.T, text string, stream bool, chunk int) {
		chunk = max(0, chunk%5)
		out := string(renderLines(text, stream, chunk))

		depth, lines := 0, 0
		for _, m := range ansiTag.FindAllStringSubmatchIndex(out, -1) {
			tag := out[m[0]:m[1]]
			if tag == "</span>" {
				depth--
				if depth < 0 {
					t.Fatalf("</span> closes nothing in %q", out)
				}
				continue
			}
			depth++
			classes := strings.Fields(out[m[2]:m[3]])
			if len(classes) == 0 {
				t.Fatalf("a span without classes in %q", out)
			}
			if classes[0] == "ln" {
				lines++
			}
			for _, c := range classes {
				if !ansiClass.MatchString(c) {
					t.Fatalf("unknown class %q in %q", c, out)
				}
			}
		}
		if depth != 0 {
			t.Fatalf("%d spans left open in %q", depth, out)
		}
		want := strings.Count(text, "\n")
		if text != "" && !strings.HasSuffix(text, "\n") {
			want++ // the last line has no newline yet
		}
		if lines != want {
			t.Fatalf("%d line spans for %d lines in %q", lines, want, out)
		}

		rest := ansiTag.ReplaceAllString(out, "")
		if i := strings.IndexAny(rest, "<>\"'\x1b"); i >= 0 {
			t.Fatalf("raw %q in the text of %q", rest[i], out)
		}
		for i := strings.IndexByte(rest, '&'); i >= 0; i = strings.IndexByte(rest, '&') {
			rest = rest[i:]
			ok := false
			for _, e := range []string{"&lt;", "&gt;", "&amp;", "&#34;", "&#39;"} {
				if strings.HasPrefix(rest, e) {
					rest, ok = rest[len(e):], true
					break
				}
			}
			if !ok {
				t.Fatalf("a stray '&' in the text of %q", out)
			}
		}
	})
}
