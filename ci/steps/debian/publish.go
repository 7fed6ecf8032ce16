package debian

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/kilnci/kiln/ci"
)

// PropPublished is the build property Publish sets once it has
// published an upload: a map with
//
//	"distribution"   the codename ("bookworm")
//	"components"     the components the packages went into (["main"])
//	"source"         the source package ("kiln-hello")
//	"version"        its version ("1.0")
//	"architectures"  the .changes' Architecture (["source", "amd64"])
//	"files"          the published files, relative to the archive's root
//	                 (["pool/main/k/kiln-hello/kiln-hello_1.0_amd64.deb", ...])
//	"changes"        the .changes file's name
const PropPublished = "deb-published"

// publishMaxChanges is the largest .changes Publish reads: a real one is a
// few kilobytes, one per file of the upload.
const publishMaxChanges = 1 << 20

// Publish takes one upload, a .changes file and the files it lists, from
// an Archive's incoming folder into one of its distributions, with
// reprepro include. It runs on the master, as steps.MasterShellCommand
// does; the upload gets there first, with steps.DirectoryUpload or
// steps.FileUpload to the archive's IncomingFolder.
//
// A version is published once: an upload that has a package at a version
// the distribution already has (or at an older version than it has) is a
// FAILURE that says so, and the archive is left as it was. (reprepro
// itself would skip such packages and succeed.) So is a name that is not
// a plain file name ending in .changes, a file missing from the incoming
// folder, a distribution the archive does not have, and a reprepro
// failure, whose summary gives reprepro's own message. reprepro's output
// is in the "stdio" log.
//
// On success the .changes and the files it lists are removed from the
// incoming folder, the summary says what was published where ("published
// kiln-hello 1.0 (source, amd64) in bookworm/main"), and the build
// property PropPublished says it for later steps.
//
// Debian's debug symbol packages (-dbgsym, as sbuild and debhelper make
// them) are ordinary .deb files: they go into the same component as the
// other packages.
type Publish struct {
	ci.StepOptions
	// Archive is the archive to publish into; it must be one of the
	// master's Services. Required.
	Archive *Archive
	// Distribution is the codename of the distribution to publish into;
	// a string or a ci.Renderable. Required. It decides, whatever the
	// .changes' Distribution field says (the changelog's: UNRELEASED,
	// unstable...).
	Distribution any
	// Changes is the name of the .changes file in the archive's incoming
	// folder; a string or a ci.Renderable. If nil, the base name of the
	// build property deb-changes, which Sbuild sets.
	Changes any
}

// Options implements ci.Step, naming the step "publish" by default.
func (p *Publish) Options() ci.StepOptions {
	o := p.StepOptions
	if o.Name == "" {
		o.Name = "publish"
	}
	return o
}

// Validate checks the configuration: the fields set, a Distribution the
// archive has and a Changes that is a plain .changes name, when they are
// plain strings.
func (p *Publish) Validate() error {
	var errs []error
	if p.Archive == nil {
		errs = append(errs, errors.New("Archive is not set"))
	}
	switch d := p.Distribution.(type) {
	case nil:
		errs = append(errs, errors.New("Distribution is not set"))
	case string:
		switch {
		case d == "":
			errs = append(errs, errors.New("Distribution is empty"))
		case p.Archive != nil && !slices.Contains(p.Archive.Codenames(), d):
			errs = append(errs, fmt.Errorf("Distribution %q is not one of the archive's (%s)", d, strings.Join(p.Archive.Codenames(), ", ")))
		}
	default:
		if err := ci.CheckValue(d); err != nil {
			errs = append(errs, fmt.Errorf("Distribution: %w", err))
		}
	}
	switch c := p.Changes.(type) {
	case nil:
	case string:
		if msg := publishCheckName(c); msg != "" {
			errs = append(errs, errors.New("Changes "+msg))
		}
	default:
		if err := ci.CheckValue(c); err != nil {
			errs = append(errs, fmt.Errorf("Changes: %w", err))
		}
	}
	return errors.Join(errs...)
}

// ValidateConfig checks that the archive is one of the master's services:
// otherwise nothing would prepare it, and Publish would wait for it.
func (p *Publish) ValidateConfig(c *ci.MasterConfig) error {
	if p.Archive == nil {
		return nil
	}
	for _, s := range c.Services {
		if a, ok := s.(*Archive); ok && a == p.Archive {
			return nil
		}
	}
	return fmt.Errorf("Archive (%s) is not in the master's Services: add it there, so that the master prepares and serves it", p.Archive)
}

// publishCheckName says what is wrong with the name of a .changes file,
// or "" if nothing is: it must be a plain file name in the incoming
// folder.
func publishCheckName(name string) string {
	switch {
	case name == "":
		return "is empty: give the name of a .changes file"
	case strings.ContainsAny(name, `/\`) || strings.Contains(name, ".."),
		strings.HasPrefix(name, "."), archiveHasControl(name),
		!strings.HasSuffix(name, ".changes"), name == ".changes":
		return fmt.Sprintf("%q is not a plain file name ending in .changes", name)
	}
	return ""
}

// Run implements ci.Step.
func (p *Publish) Run(ctx context.Context, s *ci.StepRun) (ci.Result, error) {
	stdio, err := s.AddLog(ctx, "stdio", ci.LogStream)
	if err != nil {
		return ci.Exception, err
	}
	fail := func(format string, args ...any) (ci.Result, error) {
		msg := fmt.Sprintf(format, args...)
		stdio.AddHeader(msg + "\n")
		s.SetStateString(msg)
		return ci.Failure, nil
	}
	if p.Archive == nil {
		return ci.Exception, errors.New("publish: Archive is not set")
	}
	dist, err := s.RenderString(ctx, p.Distribution)
	if err != nil {
		return ci.Exception, fmt.Errorf("distribution: %w", err)
	}
	name, err := p.changesName(ctx, s)
	if err != nil {
		return ci.Exception, err
	}
	if name == "" && p.Changes == nil {
		return fail("nothing to publish: Changes is not set and the build has no property %s (Sbuild sets it)", PropChanges)
	}
	if msg := publishCheckName(name); msg != "" {
		return fail("Changes %s", msg)
	}
	s.SetStateString("publishing " + name)

	st, err := p.Archive.wait(ctx)
	if err != nil {
		return ci.Cancelled, nil
	}
	if _, ok := st.dists[dist]; !ok {
		return fail("unknown distribution %q: the archive has %s", dist, strings.Join(p.Archive.Codenames(), ", "))
	}
	changesPath := filepath.Join(st.incoming, name)
	data, err := publishReadChanges(changesPath)
	if errors.Is(err, os.ErrNotExist) {
		return fail("no %s in the incoming folder %s", name, st.incoming)
	}
	if err != nil {
		return fail("%s: %v", name, err)
	}
	up, err := publishParseChanges(data)
	if err != nil {
		return fail("%s: %v", name, err)
	}
	for _, f := range up.files {
		fi, err := os.Lstat(filepath.Join(st.incoming, f))
		switch {
		case errors.Is(err, os.ErrNotExist):
			return fail("%s lists %s, which is not in the incoming folder %s", name, f, st.incoming)
		case err != nil:
			return fail("%s lists %s: %v", name, f, err)
		case !fi.Mode().IsRegular():
			return fail("%s lists %s, which is not a regular file", name, f)
		}
	}

	unlock, err := p.Archive.lock(ctx)
	if err != nil {
		return ci.Cancelled, nil
	}
	defer unlock()
	before, err := st.list(ctx, stdio, dist, up.names())
	if err != nil {
		return p.runFailure(ctx, fail, err)
	}
	if msg := up.conflicts(dist, before); msg != "" {
		return fail("%s", msg)
	}
	// The step's Distribution decides where the upload goes, whatever
	// the changelog said (UNRELEASED, unstable...).
	if _, err := st.run(ctx, stdio, "--ignore=wrongdistribution", "include", dist, changesPath); err != nil {
		if ctx.Err() == nil {
			var rerr *repreproError
			if errors.As(err, &rerr) {
				return fail("reprepro could not publish %s in %s: %s", up, dist, rerr.line)
			}
		}
		return p.runFailure(ctx, fail, err)
	}
	after, err := st.list(ctx, stdio, dist, up.names())
	if err != nil {
		return p.runFailure(ctx, fail, err)
	}
	published, missing := up.published(after)
	if len(missing) > 0 {
		return fail("reprepro did not publish %s in %s (see the stdio log)", strings.Join(missing, ", "), dist)
	}

	result := ci.Success
	for _, f := range append([]string{name}, up.files...) {
		if err := os.Remove(filepath.Join(st.incoming, f)); err != nil && !errors.Is(err, os.ErrNotExist) {
			stdio.AddHeader(fmt.Sprintf("cannot remove %s from the incoming folder: %v\n", f, err))
			result = ci.Warnings
		}
	}
	var components []string
	for _, e := range after {
		if up.matches(e) && !slices.Contains(components, e.component) {
			components = append(components, e.component)
		}
	}
	s.SetProperty(PropPublished, map[string]any{
		"distribution":  dist,
		"components":    components,
		"source":        up.source,
		"version":       up.version,
		"architectures": up.archs,
		"files":         published,
		"changes":       name,
	}, "Publish")
	msg := fmt.Sprintf("published %s in %s/%s", up, dist, strings.Join(components, "+"))
	if st.fingerprint == "" {
		msg += "; the archive is unsigned"
	}
	stdio.AddHeader(msg + "\n")
	s.SetStateString(msg)
	return result, nil
}

// runFailure turns a failed reprepro run into the step's result.
func (p *Publish) runFailure(ctx context.Context, fail func(string, ...any) (ci.Result, error), err error) (ci.Result, error) {
	if ctx.Err() != nil {
		return ci.Cancelled, nil
	}
	return fail("%v", err)
}

// changesName renders Changes, or takes the base name of deb-changes.
func (p *Publish) changesName(ctx context.Context, s *ci.StepRun) (string, error) {
	if p.Changes != nil {
		name, err := s.RenderString(ctx, p.Changes)
		if err != nil {
			return "", fmt.Errorf("changes: %w", err)
		}
		return name, nil
	}
	v, ok := s.Property(PropChanges)
	if !ok || v == nil || v == "" {
		return "", nil
	}
	str, ok := v.(string)
	if !ok {
		return "", fmt.Errorf("property %s is a %T, not a path", PropChanges, v)
	}
	if i := strings.LastIndexAny(str, `/\`); i >= 0 {
		str = str[i+1:]
	}
	return str, nil
}

// publishReadChanges reads a .changes file, which must be a regular file
// of sane size.
func publishReadChanges(name string) ([]byte, error) {
	fi, err := os.Lstat(name)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, errors.New("not a regular file")
	}
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, publishMaxChanges+1))
	if err != nil {
		return nil, err
	}
	if len(data) > publishMaxChanges {
		return nil, fmt.Errorf("larger than %d bytes: not a .changes file", publishMaxChanges)
	}
	return data, nil
}

// publishUpload is what Publish reads of a .changes.
type publishUpload struct {
	source  string
	version string
	archs   []string // the Architecture field
	files   []string // the Files field's names
	items   []publishItem
}

// publishItem is a package of an upload: a .dsc, .deb, .udeb or .ddeb.
type publishItem struct {
	typ      string // "dsc", "deb", "udeb", "ddeb": reprepro's $type
	name     string // package name
	version  string
	arch     string // "source" for a .dsc
	basename string // the file's name
}

var (
	// publishPackageRe is a Debian package name (Debian policy 5.6.1,
	// 5.6.7); anything else in a .changes is refused before reprepro
	// sees it.
	publishPackageRe = regexp.MustCompile(`^[a-z0-9][a-z0-9.+-]+$`)
	// publishVersionRe is the characters of a Debian version.
	publishVersionRe = regexp.MustCompile(`^[A-Za-z0-9.+~:-]+$`)
)

// String is how messages name the upload: "kiln-hello 1.0 (source,
// amd64)".
func (u *publishUpload) String() string {
	return fmt.Sprintf("%s %s (%s)", u.source, u.version, strings.Join(u.archs, ", "))
}

// names returns the package names of the upload's items.
func (u *publishUpload) names() []string {
	var names []string
	for _, it := range u.items {
		if !slices.Contains(names, it.name) {
			names = append(names, it.name)
		}
	}
	return names
}

// publishParseChanges reads the fields Publish needs from a .changes,
// clear-signed or not.
func publishParseChanges(data []byte) (*publishUpload, error) {
	fields, err := publishParseControl(data)
	if err != nil {
		return nil, err
	}
	for _, f := range []string{"Source", "Version", "Architecture", "Files"} {
		if strings.TrimSpace(fields[f]) == "" {
			return nil, fmt.Errorf("no %s field: not a .changes file", f)
		}
	}
	u := &publishUpload{
		source:  strings.TrimSpace(fields["Source"]),
		version: strings.TrimSpace(fields["Version"]),
		archs:   strings.Fields(fields["Architecture"]),
	}
	// A binNMU names its source's version: "Source: hello (1.0-1)".
	if name, _, ok := strings.Cut(u.source, " "); ok {
		u.source = name
	}
	if !publishPackageRe.MatchString(u.source) {
		return nil, fmt.Errorf("Source %q is not a package name", u.source)
	}
	if !publishVersionRe.MatchString(u.version) {
		return nil, fmt.Errorf("Version %q is not a Debian version", u.version)
	}
	noEpoch := u.version
	if _, v, ok := strings.Cut(noEpoch, ":"); ok {
		noEpoch = v
	}
	for _, line := range strings.Split(strings.TrimSpace(fields["Files"]), "\n") {
		f := strings.Fields(line)
		if len(f) != 5 {
			return nil, fmt.Errorf("Files line %q is not: md5sum size section priority name", line)
		}
		file := f[4]
		if strings.ContainsAny(file, `/\`) || strings.HasPrefix(file, ".") || strings.Contains(file, "..") {
			return nil, fmt.Errorf("Files lists %q, which is not a plain file name", file)
		}
		u.files = append(u.files, file)
		ext := path.Ext(file)
		switch ext {
		case ".dsc":
			u.items = append(u.items, publishItem{typ: "dsc", name: u.source, version: u.version, arch: "source", basename: file})
		case ".deb", ".udeb", ".ddeb":
			parts := strings.Split(strings.TrimSuffix(file, ext), "_")
			if len(parts) != 3 || !publishPackageRe.MatchString(parts[0]) || !publishVersionRe.MatchString(parts[1]) || parts[2] == "" {
				return nil, fmt.Errorf("Files lists %q, which is not named package_version_architecture%s", file, ext)
			}
			version := parts[1]
			if version == noEpoch {
				version = u.version
			}
			u.items = append(u.items, publishItem{typ: ext[1:], name: parts[0], version: version, arch: parts[2], basename: file})
		}
	}
	if len(u.items) == 0 {
		return nil, errors.New("Files lists no package (.dsc, .deb, .udeb)")
	}
	return u, nil
}

// publishParseControl parses the first paragraph of a Debian control file
// (deb822), after removing an OpenPGP clear signature's armour. Values of
// fields that span lines keep their lines, without the leading space.
func publishParseControl(data []byte) (map[string]string, error) {
	lines := strings.Split(strings.ReplaceAll(string(data), "\r\n", "\n"), "\n")
	// A clear-signed file: the text is between the armour header's blank
	// line and the signature, with dash-escaped lines.
	for i, l := range lines {
		if strings.TrimSpace(l) == "" {
			continue
		}
		if l == "-----BEGIN PGP SIGNED MESSAGE-----" {
			var text []string
			j := i + 1
			for j < len(lines) && strings.TrimSpace(lines[j]) != "" {
				j++
			}
			for j++; j < len(lines) && lines[j] != "-----BEGIN PGP SIGNATURE-----"; j++ {
				text = append(text, strings.TrimPrefix(lines[j], "- "))
			}
			lines = text
		}
		break
	}
	fields := map[string]string{}
	last := ""
	sc := bufio.NewScanner(bytes.NewReader([]byte(strings.Join(lines, "\n"))))
	sc.Buffer(make([]byte, 0, 64<<10), publishMaxChanges)
	started := false
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.TrimSpace(line) == "":
			if started {
				return fields, nil // the first paragraph only
			}
		case strings.HasPrefix(line, "#"):
		case line[0] == ' ' || line[0] == '\t':
			if last == "" {
				return nil, errors.New("a continuation line before any field: not a control file")
			}
			fields[last] += "\n" + strings.TrimSpace(line)
		default:
			name, value, ok := strings.Cut(line, ":")
			if !ok || name == "" || strings.ContainsAny(name, " \t") {
				return nil, fmt.Errorf("line %q is not a field: not a control file", publishShorten(line))
			}
			last = name
			fields[name] = strings.TrimSpace(value)
			started = true
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return fields, nil
}

// publishShorten cuts a line quoted in a message.
func publishShorten(s string) string {
	if len(s) > 60 {
		return s[:57] + "..."
	}
	return s
}

// archiveEntry is a package in a distribution, as reprepro lists it.
type archiveEntry struct {
	typ, arch, component, name, version, basename, filekey string
}

// archiveListFormat is the --list-format of list and listfilter that
// archiveEntry reads: tab-separated, one package per line.
const archiveListFormat = `${$type}\t${$architecture}\t${$component}\t${package}\t${version}\t${$basename}\t${$filekey}\n`

// list returns what the distribution has of the packages names (which
// must be package names: they go into a reprepro formula). The caller
// holds the archive's lock. The command and its time go to log, when not
// nil, without its output.
func (st *archiveState) list(ctx context.Context, log *ci.LogWriter, dist string, names []string) ([]archiveEntry, error) {
	terms := make([]string, len(names))
	for i, n := range names {
		if !publishPackageRe.MatchString(n) {
			return nil, fmt.Errorf("%q is not a package name", n)
		}
		terms[i] = "Package (== " + n + ")"
	}
	out, err := st.runLogged(ctx, log, false, "--list-format="+archiveListFormat, "listfilter", dist, strings.Join(terms, " | "))
	if err != nil {
		return nil, err
	}
	var entries []archiveEntry
	for _, line := range strings.Split(out, "\n") {
		f := strings.Split(line, "\t")
		if len(f) != 7 {
			continue
		}
		entries = append(entries, archiveEntry{typ: f[0], arch: f[1], component: f[2], name: f[3], version: f[4], basename: f[5], filekey: f[6]})
	}
	return entries, nil
}

// covers reports whether the distribution's entry is where the item would
// go: the same package, type and architecture (an "all" package goes into
// every binary architecture).
func (it publishItem) covers(e archiveEntry) bool {
	if e.name != it.name || e.typ != it.typ {
		return false
	}
	return e.arch == it.arch || it.arch == "all" && e.arch != "source"
}

// matches reports whether e is one of the upload's packages.
func (u *publishUpload) matches(e archiveEntry) bool {
	return slices.ContainsFunc(u.items, func(it publishItem) bool { return it.covers(e) && it.basename == e.basename })
}

// conflicts says why the upload must not be published in dist, given what
// dist has of its packages, or "" if it may: a version is published once,
// and reprepro would skip, not refuse, a version older than what is there.
func (u *publishUpload) conflicts(dist string, have []archiveEntry) string {
	var already, newer []string
	for _, it := range u.items {
		for _, e := range have {
			if !it.covers(e) {
				continue
			}
			switch c := archiveCompareVersions(e.version, it.version); {
			case e.basename == it.basename || c == 0:
				if !slices.Contains(already, it.arch) {
					already = append(already, it.arch)
				}
			case c > 0:
				newer = append(newer, fmt.Sprintf("%s %s (%s)", e.name, e.version, e.arch))
			}
		}
	}
	if len(already) > 0 {
		return fmt.Sprintf("%s %s (%s) is already in %s; a version is published once: raise the version to publish again", u.source, u.version, strings.Join(already, ", "), dist)
	}
	if len(newer) > 0 {
		return fmt.Sprintf("%s has newer packages than %s %s: %s; raise the version above theirs to publish", dist, u.source, u.version, strings.Join(newer, ", "))
	}
	return ""
}

// published returns the files of the upload that the distribution now
// has, relative to the archive's root, and the upload's packages it does
// not have.
func (u *publishUpload) published(have []archiveEntry) (files, missing []string) {
	for _, it := range u.items {
		i := slices.IndexFunc(have, func(e archiveEntry) bool { return it.covers(e) && e.basename == it.basename })
		if i < 0 {
			missing = append(missing, it.basename)
			continue
		}
		key := have[i].filekey
		if !slices.Contains(files, key) {
			files = append(files, key)
		}
		if it.typ == "dsc" {
			// The source's other files sit beside its .dsc.
			for _, f := range u.files {
				if f != it.basename && !slices.ContainsFunc(u.items, func(o publishItem) bool { return o.basename == f }) &&
					!strings.HasSuffix(f, ".buildinfo") {
					files = append(files, path.Join(path.Dir(key), f))
				}
			}
		}
	}
	return files, missing
}

// archiveCompareVersions compares two Debian versions as dpkg does
// (Debian policy 5.6.12): negative if a is older than b, zero if they are
// equal, positive if a is newer.
func archiveCompareVersions(a, b string) int {
	ea, ua, ra := archiveSplitVersion(a)
	eb, ub, rb := archiveSplitVersion(b)
	if ea != eb {
		if ea < eb {
			return -1
		}
		return 1
	}
	if c := archiveCompareFragment(ua, ub); c != 0 {
		return c
	}
	return archiveCompareFragment(ra, rb)
}

// archiveSplitVersion splits a version into epoch, upstream version and
// Debian revision.
func archiveSplitVersion(v string) (epoch int, upstream, revision string) {
	if e, rest, ok := strings.Cut(v, ":"); ok {
		for _, c := range e {
			if c < '0' || c > '9' {
				break
			}
			epoch = epoch*10 + int(c-'0')
		}
		v = rest
	}
	if i := strings.LastIndexByte(v, '-'); i >= 0 {
		return epoch, v[:i], v[i+1:]
	}
	return epoch, v, ""
}

// archiveCompareFragment is dpkg's verrevcmp: non-digit parts compare
// with letters before other characters and '~' before everything, even
// the end; digit parts compare as numbers.
func archiveCompareFragment(a, b string) int {
	order := func(s string) int {
		if s == "" {
			return 0
		}
		c := s[0]
		switch {
		case c >= '0' && c <= '9':
			return 0
		case c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z':
			return int(c)
		case c == '~':
			return -1
		}
		return int(c) + 256
	}
	digit := func(s string) bool { return s != "" && s[0] >= '0' && s[0] <= '9' }
	for a != "" || b != "" {
		for a != "" && !digit(a) || b != "" && !digit(b) {
			if ac, bc := order(a), order(b); ac != bc {
				return ac - bc
			}
			if a != "" {
				a = a[1:]
			}
			if b != "" {
				b = b[1:]
			}
		}
		a = strings.TrimLeft(a, "0")
		b = strings.TrimLeft(b, "0")
		first := 0
		for digit(a) && digit(b) {
			if first == 0 {
				first = int(a[0]) - int(b[0])
			}
			a, b = a[1:], b[1:]
		}
		if digit(a) {
			return 1
		}
		if digit(b) {
			return -1
		}
		if first != 0 {
			return first
		}
	}
	return 0
}
