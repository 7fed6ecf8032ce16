package webui

import (
	"context"
	"html/template"
	"net/url"
	"strconv"
	"strings"

	"github.com/kilnci/kiln/ci"
)

// A log as a page shows it: the header lines that start a stream log (the
// command a shell step ran, its folder, argv and environment) folded
// above the output, so that the output is what a reader sees first; then
// the last lines of the output, numbered; links to the log's page, the
// raw text and a download. A running log is followed live by the page's
// script (static/kiln.js), which goes on filling the header while the log
// holds nothing else.

// maxHead bounds the header lines folded above a log's output: a longer
// header goes on in the output. static/kiln.js uses the same bound.
const maxHead = 200

type logView struct {
	Log       *ci.Log
	URL       string // the log's page
	RawURL    string // the download
	InlineURL string // the raw text, shown by the browser
	LiveURL   string // "" once the log is complete (but see patchLogView)
	// Head is the header lines that start the log, rendered; Command the
	// text of the first of them; HeadLines how many there are. HeadOpen
	// is set while the log runs and holds only header lines: more may
	// come.
	Head      template.HTML
	Command   string
	HeadLines int
	HeadOpen  bool
	// Lines are the output lines shown, from line First (counting from 0
	// in the whole log) to Next (excluded).
	Lines       template.HTML
	First, Next int
	// Earlier is how many output lines come before First.
	Earlier int
	// Keep is how many output lines the page keeps while it follows the
	// log: as many as it shows when it is loaded.
	Keep int
	Open bool
	// Page is set on the log's own page.
	Page bool
	// Anchor starts the fragment of a link to one of its lines: "L" on
	// the log's page (#L12), "log-ID-L" on a build page.
	Anchor string
}

// isHeadLine reports whether a stored line of a stream log (with its
// stream letter and newline) belongs to the header that starts it: a
// header line that is neither empty (a header line the worker writes
// before a message at the end, such as a timeout) nor the exit status.
// static/kiln.js applies the same rule to rendered lines.
func isHeadLine(line string) bool {
	line = strings.TrimSuffix(line, "\n")
	return len(line) > 1 && line[0] == 'h' && !strings.HasPrefix(line[1:], "program finished")
}

// logView reads what a page shows of a log: its header and its last max
// output lines.
func (a *app) logView(ctx context.Context, st ci.Store, builder string, build *ci.Build, s *ci.StepRecord, l *ci.Log, max int) (logView, error) {
	lv := a.newLogView(builder, build, s, l, max)
	if err := lv.readHead(ctx, st); err != nil {
		return lv, err
	}
	lv.First = max0(lv.HeadLines, l.NumLines-max)
	lv.Next = l.NumLines
	lv.Earlier = lv.First - lv.HeadLines
	if lv.First < l.NumLines {
		text, err := st.LogLines(ctx, l.ID, lv.First, l.NumLines-1)
		if err != nil {
			return lv, err
		}
		lv.Lines = renderChunks(text, l.Type == ci.LogStream)
	}
	return lv, nil
}

// patchLogView is logView for a page's script that adds the log to a page
// already open: the header, and no output lines; the script reads them
// from the live stream, which ends at once for a complete log.
func (a *app) patchLogView(ctx context.Context, st ci.Store, builder string, build *ci.Build, s *ci.StepRecord, l *ci.Log, max int) (logView, error) {
	lv := a.newLogView(builder, build, s, l, max)
	if err := lv.readHead(ctx, st); err != nil {
		return lv, err
	}
	lv.First, lv.Next = lv.HeadLines, lv.HeadLines
	lv.LiveURL = a.base + "logs/" + strconv.FormatInt(l.ID, 10) + "/live"
	return lv, nil
}

func max0(a, b int) int {
	if b > a {
		return b
	}
	return a
}

func (a *app) newLogView(builder string, build *ci.Build, s *ci.StepRecord, l *ci.Log, max int) logView {
	id := strconv.FormatInt(l.ID, 10)
	lv := logView{Log: l, Keep: max,
		URL:       a.buildURL(builder, build.Number) + "/steps/" + strconv.Itoa(s.Number) + "/logs/" + url.PathEscape(l.Slug),
		RawURL:    a.base + "api/v2/logs/" + id + "/raw",
		InlineURL: a.base + "api/v2/logs/" + id + "/raw_inline",
		Anchor:    "log-" + id + "-L",
	}
	if !l.Complete {
		lv.LiveURL = a.base + "logs/" + id + "/live"
	}
	return lv
}

// readHead reads the header lines that start a stream log.
func (lv *logView) readHead(ctx context.Context, st ci.Store) error {
	l := lv.Log
	if l.Type != ci.LogStream {
		return nil
	}
	lv.HeadOpen = !l.Complete
	if l.NumLines == 0 {
		return nil
	}
	text, err := st.LogLines(ctx, l.ID, 0, min(l.NumLines, maxHead)-1)
	if err != nil {
		return err
	}
	end := 0
	for line := range strings.SplitAfterSeq(text, "\n") {
		if line == "" {
			break // after the last line
		}
		if !isHeadLine(line) {
			lv.HeadOpen = false
			break
		}
		if lv.HeadLines == 0 {
			lv.Command = strings.TrimSuffix(line[1:], "\n")
		}
		lv.HeadLines++
		end += len(line)
	}
	if lv.HeadLines < l.NumLines || lv.HeadLines == maxHead {
		lv.HeadOpen = false
	}
	if lv.HeadLines > 0 {
		lv.Head = renderLog(text[:end], true)
	}
	return nil
}
