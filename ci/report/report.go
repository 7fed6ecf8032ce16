package report

import (
	"fmt"
	"strings"
	"time"

	"github.com/kilnci/kiln/ci"
)

// resultDescriptions are Buildbot's words for how a build ended.
var resultDescriptions = map[ci.Result]string{
	ci.Success:   "completed successfully",
	ci.Warnings:  "completed with warnings",
	ci.Failure:   "failed",
	ci.Skipped:   "was skipped",
	ci.Exception: "stopped with exception",
	ci.Retry:     "has been retried",
	ci.Cancelled: "was cancelled",
}

func describeResult(r ci.Result) string {
	if d, ok := resultDescriptions[r]; ok {
		return d
	}
	return "ended with " + r.String()
}

// builderName returns the name of the report's builder.
func builderName(r *ci.Report) string {
	if r.Builder != nil {
		return r.Builder.Name
	}
	return fmt.Sprintf("builder %d", r.Build.BuilderID)
}

// sourceSummary describes what a build builds, as "v1.0" or "master
// 3f786850": the branch and a short revision of its first source stamp.
func sourceSummary(r *ci.Report) string {
	if len(r.SourceStamps) == 0 {
		return ""
	}
	ss := r.SourceStamps[0]
	for _, s := range r.SourceStamps {
		if s.Codebase == "" {
			ss = s
		}
	}
	var parts []string
	if ss.Branch != "" {
		parts = append(parts, ss.Branch)
	}
	if rev := ss.Revision; rev != "" && rev != ss.Branch {
		if len(rev) > 12 && isCommitID(rev) {
			rev = rev[:12]
		}
		parts = append(parts, rev)
	}
	return strings.Join(parts, " ")
}

// isCommitID reports whether s is a full Git commit ID (SHA-1 or SHA-256).
func isCommitID(s string) bool {
	if len(s) != 40 && len(s) != 64 {
		return false
	}
	for _, c := range s {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// revisionOf returns the commit a build built for a source stamp: its
// got_revision property (a string, or a map by codebase when the build
// has several), else the source stamp's revision.
func revisionOf(r *ci.Report, ss ci.SourceStamp) string {
	if r.Build != nil {
		if v, ok := r.Build.Properties.Get("got_revision"); ok {
			switch v := v.(type) {
			case string:
				if v != "" {
					return v
				}
			case map[string]any:
				if s, ok := v[ss.Codebase].(string); ok && s != "" {
					return s
				}
			}
		}
	}
	return ss.Revision
}

// oneLine replaces the line breaks and other control characters of text
// from outside (branch names, state strings) with spaces, so that it
// cannot end a protocol line or a mail header early.
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}

// truncate cuts s to at most n bytes, on a rune boundary, marking the cut.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n - len("…")
	for cut > 0 && !utf8RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

func utf8RuneStart(b byte) bool { return b&0xC0 != 0x80 }

// ago describes how long ago t was, coarsely ("5 minutes").
func ago(d time.Duration) string {
	plural := func(n int, unit string) string {
		if n == 1 {
			return "1 " + unit
		}
		return fmt.Sprintf("%d %ss", n, unit)
	}
	switch {
	case d < time.Minute:
		return plural(max(int(d/time.Second), 0), "second")
	case d < time.Hour:
		return plural(int(d/time.Minute), "minute")
	case d < 48*time.Hour:
		return plural(int(d/time.Hour), "hour")
	}
	return plural(int(d/(24*time.Hour)), "day")
}
