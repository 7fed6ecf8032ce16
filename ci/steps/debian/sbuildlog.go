package debian

import (
	"bufio"
	"io"
	"regexp"
	"strings"
)

// SbuildReport is what sbuild's output says of a build: the fields of its
// header and of its closing summary, the .changes files it wrote, and,
// when it failed, where and how. ReadSbuildLog makes one from a whole log
// (the .build file sbuild leaves); the Sbuild step makes one from the
// output as it arrives.
type SbuildReport struct {
	// Package and Version are the source package and its version.
	Package, Version string
	// Distribution is the distribution built for.
	Distribution string
	// HostArch is the architecture built for; BuildArch the one built on
	// (they differ in a cross build).
	HostArch, BuildArch string
	// Status is sbuild's verdict: "successful", "attempted" (the build
	// failed), "given-back" (the build dependencies could not be
	// installed), "failed" (sbuild itself failed, for example with no
	// chroot) or "skipped"; empty if sbuild printed no summary.
	Status string
	// FailStage is the stage that failed ("build", "install-deps",
	// "create-session"...), when one did.
	FailStage string
	// Summary holds every field of the closing summary, by name.
	Summary map[string]string

	// Changes names the .changes files of the Changes section, in order.
	Changes []string
	// Files lists the files of the main .changes (see MainChanges).
	Files []string

	// Errors are sbuild's "E:" lines, in order.
	Errors []string
	// Tail holds the last lines of the stage that was running last, up to
	// TailLines: when the build failed, the end of the failing command's
	// output.
	Tail []string
	// MissingChroot names the chroot (a schroot name or a tarball) sbuild
	// said it could not find, if it did.
	MissingChroot string
	// Section is the title of the last section of the log that is part
	// of the build (not the cleanup or summary), where Tail was taken.
	Section string
}

// TailLines is how many lines of the failing stage an SbuildReport keeps.
const TailLines = 12

// MainChanges returns the .changes of the build: the one for the host
// architecture, else the first that is not a source-only upload.
func (r *SbuildReport) MainChanges() string {
	for _, c := range r.Changes {
		if r.HostArch != "" && strings.HasSuffix(c, "_"+r.HostArch+".changes") {
			return c
		}
	}
	for _, c := range r.Changes {
		if !strings.HasSuffix(c, "_source.changes") {
			return c
		}
	}
	if len(r.Changes) > 0 {
		return r.Changes[0]
	}
	return ""
}

// Debs returns the binary packages (.deb and .udeb files) of Files.
func (r *SbuildReport) Debs() []string {
	var debs []string
	for _, f := range r.Files {
		if strings.HasSuffix(f, ".deb") || strings.HasSuffix(f, ".udeb") {
			debs = append(debs, f)
		}
	}
	return debs
}

// FailingLine returns the line of Tail most likely to say what went wrong:
// the first that reports an error, else the last line.
func (r *SbuildReport) FailingLine() string {
	for _, l := range r.Tail {
		if errorLineRe.MatchString(l) {
			return l
		}
	}
	if len(r.Errors) > 0 {
		return r.Errors[0]
	}
	if len(r.Tail) > 0 {
		return r.Tail[len(r.Tail)-1]
	}
	return ""
}

var errorLineRe = regexp.MustCompile(`\*\*\*|(?i:\berror\b)|(?i:\bfailed\b)|(?i:\bcannot\b)|^E: |Unable to|unmet dependencies|not installable`)

// ReadSbuildLog reads a whole sbuild log.
func ReadSbuildLog(r io.Reader) (*SbuildReport, error) {
	var p sbuildParser
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		p.line(sc.Text())
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return p.report(), nil
}

// sbuildParser reads sbuild's output a line at a time, keeping only what
// the report needs: its memory does not grow with the log.
type sbuildParser struct {
	r SbuildReport

	// Framing: sbuild draws each section's title in a box.
	afterBorder bool   // the previous line was a box border
	inHeader    bool   // inside the first box's fields (Package:, Version:...)
	section     string // the current section's title
	prev        string // the previous line

	// The tail of the current section, a ring; frozen once the section's
	// command finished ("Build finished at").
	ring   [TailLines]string
	n      int // lines pushed
	valid  int // of which still in the ring
	frozen bool

	// The Changes section.
	changes   string // the .changes whose stanza is being read
	inFiles   bool
	mainFiles map[string][]string
}

var (
	borderRe    = regexp.MustCompile(`^\+[-=]{20,}\+$`)
	titleRe     = regexp.MustCompile(`^\| (.*?)\s*\|$`)
	dashesRe    = regexp.MustCompile(`^-{3,}$`)
	fieldRe     = regexp.MustCompile(`^([A-Z][A-Za-z-]*(?: [A-Z][A-Za-z-]*)*): (.*)$`)
	changesRe   = regexp.MustCompile(`^(\S+\.changes):$`)
	unshareMiss = regexp.MustCompile(`^Chroot (\S+) does not exist`)
	schrootMiss = regexp.MustCompile(`^E: (\S+): Chroot not found`)
	distMiss    = regexp.MustCompile(`^E: Chroot for distribution (\S+), architecture (\S+) not found`)
)

// sections that are not part of the build itself: the tail is not taken
// from them.
var afterBuild = map[string]bool{
	"Cleanup": true, "Summary": true, "Post Build": true, "Changes": true,
	"Buildinfo": true, "Package contents": true, "Finished": true,
}

func (p *sbuildParser) line(l string) {
	defer func() { p.prev = l }()
	switch {
	case borderRe.MatchString(l):
		p.afterBorder = !p.afterBorder
		if !p.afterBorder && strings.HasPrefix(l, "+=") {
			p.inHeader = true
		}
		return
	case p.afterBorder:
		if m := titleRe.FindStringSubmatch(l); m != nil {
			p.enter(strings.TrimSpace(m[1]))
		}
		return
	}
	if strings.HasPrefix(l, "E: ") {
		p.r.Errors = append(p.r.Errors, strings.TrimPrefix(l, "E: "))
	}
	if m := unshareMiss.FindStringSubmatch(l); m != nil {
		p.r.MissingChroot = m[1]
	} else if m := schrootMiss.FindStringSubmatch(l); m != nil {
		p.r.MissingChroot = m[1]
	} else if m := distMiss.FindStringSubmatch(l); m != nil && p.r.MissingChroot == "" {
		p.r.MissingChroot = m[1] + "-" + m[2] + "-sbuild"
	}
	if p.inHeader {
		if m := fieldRe.FindStringSubmatch(l); m != nil {
			p.headerField(m[1], m[2])
		} else if l != "" {
			p.inHeader = false
		}
	}
	switch p.section {
	case "Summary":
		if m := fieldRe.FindStringSubmatch(l); m != nil {
			p.summaryField(m[1], m[2])
		}
		return
	case "Changes":
		p.changesLine(l)
		return
	}
	if afterBuild[p.section] {
		return
	}
	p.tailLine(l)
}

// enter starts a section.
func (p *sbuildParser) enter(title string) {
	p.section = title
	p.inHeader = false
	if !afterBuild[title] {
		p.r.Section = title
		p.n, p.valid = 0, 0
		p.frozen = false
	}
	p.changes, p.inFiles = "", false
}

func (p *sbuildParser) headerField(k, v string) {
	switch k {
	case "Package":
		p.r.Package = v
	case "Version":
		p.r.Version = v
	case "Distribution":
		p.r.Distribution = v
	case "Host Architecture":
		p.r.HostArch = v
	case "Build Architecture":
		p.r.BuildArch = v
	}
}

func (p *sbuildParser) summaryField(k, v string) {
	if p.r.Summary == nil {
		p.r.Summary = map[string]string{}
	}
	p.r.Summary[k] = v
	switch k {
	case "Status":
		p.r.Status = v
	case "Fail-Stage":
		p.r.FailStage = v
	case "Package", "Version", "Distribution":
		p.headerField(k, v)
	case "Host Architecture", "Build Architecture":
		p.headerField(k, v)
	}
}

// changesLine reads the Changes section: each .changes's name, then its
// stanza, whose Files field lists the files.
func (p *sbuildParser) changesLine(l string) {
	if m := changesRe.FindStringSubmatch(l); m != nil {
		p.changes, p.inFiles = m[1], false
		p.r.Changes = append(p.r.Changes, m[1])
		return
	}
	if p.changes == "" {
		return
	}
	if l == "Files:" {
		p.inFiles = true
		return
	}
	if p.inFiles && strings.HasPrefix(l, " ") {
		f := strings.Fields(l)
		if len(f) >= 5 {
			if p.mainFiles == nil {
				p.mainFiles = map[string][]string{}
			}
			p.mainFiles[p.changes] = append(p.mainFiles[p.changes], f[len(f)-1])
		}
		return
	}
	p.inFiles = false
}

// tailLine keeps the section's last lines, leaving out sbuild's framing.
func (p *sbuildParser) tailLine(l string) {
	if p.frozen {
		return
	}
	if strings.HasPrefix(l, "Build finished at ") {
		p.frozen = true
		return
	}
	if dashesRe.MatchString(l) {
		// A subheading is underlined: the previous line was its title.
		if p.valid > 0 && len(p.prev) == len(l) && p.ring[(p.n-1)%TailLines] == p.prev {
			p.n--
			p.valid--
		}
		return
	}
	if strings.TrimSpace(l) == "" {
		return
	}
	p.ring[p.n%TailLines] = l
	p.n++
	p.valid = min(p.valid+1, TailLines)
}

func (p *sbuildParser) report() *SbuildReport {
	r := p.r
	start := p.n - p.valid
	r.Tail = nil
	for i := start; i < p.n; i++ {
		r.Tail = append(r.Tail, p.ring[i%TailLines])
	}
	r.Files = p.mainFiles[r.MainChanges()]
	return &r
}
