package webui

import (
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
