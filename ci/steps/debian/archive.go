package debian

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/kilnci/kiln/ci"
)

// Defaults and names of Archive.
const (
	// DefaultArchiveFolder is the archive's folder, relative to the
	// master's base folder, when Archive.Folder is empty.
	DefaultArchiveFolder = "debian"
	// DefaultComponent is a distribution's component when its Components
	// are empty.
	DefaultComponent = "main"
	// ArchiveKeyFile is the archive's public key, binary, beside dists/
	// and pool/: what apt's signed-by= option takes.
	ArchiveKeyFile = "archive-key.gpg"
	// ArchiveKeyArmoredFile is the same key ASCII-armoured, for people.
	ArchiveKeyArmoredFile = "archive-key.asc"
)

// The folders an archive keeps in its Folder.
const (
	// archivePublic holds what is served: dists/, pool/ and the key
	// files. Keeping it apart from conf/, db/ and the GnuPG home means a
	// web server pointed at it (the archive's own handler, or nginx) has
	// nothing else to leak.
	archivePublic = "public"
	// archiveGnupg is the archive's own GnuPG home, mode 0700.
	archiveGnupg = "gnupg"
	// archiveIncoming is where uploads arrive unless Incoming says.
	archiveIncoming = "incoming"
)

// archiveLockRetries is what reprepro's --waitforlock is given: how many
// times, 10 seconds apart, a run retries when another reprepro (one an
// administrator started by hand, say) holds the archive's lock. Thirty
// tries is five minutes: longer than an include or an export of a
// project's archive takes, short enough that a stuck lock fails a build
// rather than hanging it. Runs of the master itself never wait on each
// other there: they are serialized in-process first.
const archiveLockRetries = 30

// archiveStopDelay is how long a reprepro run that is cancelled has, after
// SIGTERM, to leave its database and lock in order before it is killed.
const archiveStopDelay = 30 * time.Second

// Archive is an APT repository the master keeps with reprepro: one or more
// distributions, each with components and architectures, into which the
// Publish step takes what builds upload, and which apt reads over HTTP
// from the master's web server.
//
// An Archive is a ci.Service: list it in MasterConfig.Services. When the
// master starts, Run writes reprepro's configuration, imports the signing
// key into the archive's own GnuPG home and exports every distribution,
// so that an archive with no package yet already has valid, signed
// Release files. It is also an http.Handler that serves the archive
// read-only (see ServeHTTP); mount it on the web server:
//
//	&webui.Server{Mounts: map[string]http.Handler{
//		"/debian/": http.StripPrefix("/debian", archive),
//	}}
//
// Users then add to their sources:
//
//	deb [signed-by=/usr/share/keyrings/project.gpg] http://master:8010/debian bookworm main
//
// with /usr/share/keyrings/project.gpg downloaded from
// http://master:8010/debian/archive-key.gpg.
//
// Layout of Folder: conf/ (reprepro's configuration, rewritten at every
// start: edits there are lost), db/ (reprepro's database), gnupg/ (the
// GnuPG home, mode 0700), incoming/ (unless Incoming says otherwise) and
// public/, which holds dists/, pool/, archive-key.gpg and archive-key.asc
// and is all that is served. conf/options names public/ and gnupg/, so
// that reprepro run by hand (reprepro -b debian list bookworm) sees the
// archive as the master does.
//
// The exported fields are configuration, read by Validate and Run; they
// must not change once the master runs. An Archive's methods are safe for
// concurrent use: reprepro runs one at a time, and with --waitforlock, so
// that a reprepro started by hand delays them rather than failing them.
//
// Run needs reprepro and gpg (and gpgconf, to stop the archive's gpg-agent
// when the master stops).
type Archive struct {
	// Folder holds the archive (see its layout in the type's
	// documentation). It is relative to the master's base folder unless
	// absolute; DefaultArchiveFolder ("debian") if empty. Unless
	// /run/user/UID exists, gpg-agent keeps its sockets in Folder's
	// gnupg/, and Run refuses a path too long for them (over about 85
	// characters).
	Folder string
	// Incoming is the folder where uploads arrive, from which Publish
	// takes them (steps.DirectoryUpload or steps.FileUpload put them
	// there). It is relative to the master's base folder unless absolute;
	// Folder's incoming/ if empty. It is created, mode 0775, if missing.
	Incoming string
	// Distributions are the archive's distributions. At least one.
	Distributions []Distribution
	// Origin and Label are written in every Release file (apt pinning
	// reads them); left out if empty.
	Origin string
	Label  string

	// SigningKey is the OpenPGP secret key that signs the Release files:
	// ASCII-armoured ("-----BEGIN PGP PRIVATE KEY BLOCK-----"), without a
	// passphrase, since no one is there to type it. Prefer
	// SigningKeySecret, which keeps the key out of the configuration.
	// The key is never written to a log, an error or a page; it is
	// imported into the archive's own GnuPG home, and its public part is
	// exported as ArchiveKeyFile and ArchiveKeyArmoredFile.
	SigningKey string
	// SigningKeySecret names the master secret (MasterConfig.Secrets)
	// that holds the signing key, read when the archive starts. Give
	// SigningKey or SigningKeySecret, not both, unless Unsigned.
	SigningKeySecret string
	// Unsigned publishes Release files without signatures, for tests:
	// apt then accepts the archive only with [trusted=yes]. The archive
	// logs a warning when it starts, and Publish says in its summary that
	// the archive is unsigned.
	Unsigned bool

	// Reprepro is the path of the reprepro program; "reprepro", looked
	// up in PATH, if empty.
	Reprepro string

	// sem, of one slot, serializes reprepro runs and what Publish checks
	// around them; a channel, so that a stopped build stops waiting.
	semOnce sync.Once
	sem     chan struct{}
	// state is the prepared archive, nil until Run has prepared it and
	// again once Run returns.
	state atomic.Pointer[archiveState]
	// readyMu guards ready, closed when state is set.
	readyMu sync.Mutex
	ready   chan struct{}
}

// A Distribution is one distribution of an Archive: a dists/<codename>
// folder in the published tree.
type Distribution struct {
	// Codename names the distribution ("bookworm"): what Publish and
	// apt's sources say. Required, unique in the archive.
	Codename string
	// Suite is its other name ("stable"), written in its Release file,
	// and a dists/<suite> link to the codename; none if empty.
	Suite string
	// Components are its components; []string{DefaultComponent} ("main")
	// if empty. A package goes into the component its section names
	// ("contrib/net" into contrib), or the first one.
	Components []string
	// Architectures are the Debian architectures it has, with "source"
	// for source packages: []string{"amd64", "arm64", "source"}. Required.
	Architectures []string
	// Description is written in its Release file; none if empty.
	Description string
}

var (
	// archiveNameRe is what a codename, suite or component may be: it
	// becomes a folder name and a word of reprepro's configuration.
	archiveNameRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._+-]*$`)
	// archiveArchRe is what a Debian architecture name may be.
	archiveArchRe = regexp.MustCompile(`^[a-z0-9][a-z0-9-]*$`)
)

// Armour lines of the signing key.
const (
	archivePrivateBegin = "-----BEGIN PGP PRIVATE KEY BLOCK-----"
	archivePrivateEnd   = "-----END PGP PRIVATE KEY BLOCK-----"
	archivePublicBegin  = "-----BEGIN PGP PUBLIC KEY BLOCK-----"
)

// String describes the archive by its folder, never its key.
func (a *Archive) String() string { return fmt.Sprintf("Debian archive %q", a.folder()) }

// GoString is String, so that %#v does not print the key either.
func (a *Archive) GoString() string { return a.String() }

// LogValue logs the archive by its folder, never its key.
func (a *Archive) LogValue() slog.Value { return slog.StringValue(a.folder()) }

// folder returns Folder with its default.
func (a *Archive) folder() string {
	if a.Folder == "" {
		return DefaultArchiveFolder
	}
	return a.Folder
}

// IncomingFolder returns the folder uploads go to, with its default
// applied: relative to the master's base folder unless absolute, as an
// upload step's MasterDest is.
func (a *Archive) IncomingFolder() string {
	if a.Incoming != "" {
		return a.Incoming
	}
	return filepath.Join(a.folder(), archiveIncoming)
}

// Codenames returns the codenames of the archive's distributions, in
// order.
func (a *Archive) Codenames() []string {
	names := make([]string, 0, len(a.Distributions))
	for _, d := range a.Distributions {
		names = append(names, d.Codename)
	}
	return names
}

// Validate checks the configuration and reports every problem, each
// naming its field. It never quotes the signing key.
func (a *Archive) Validate() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if strings.ContainsRune(a.Folder, 0) {
		add("Folder %q is not a path", a.Folder)
	}
	if strings.ContainsRune(a.Incoming, 0) {
		add("Incoming %q is not a path", a.Incoming)
	} else if filepath.IsAbs(a.folder()) == filepath.IsAbs(a.IncomingFolder()) && archiveServed(a.folder(), a.IncomingFolder()) {
		add("Incoming %q is inside the folder the archive serves (%s): uploads would be public", a.Incoming, filepath.Join(a.folder(), archivePublic))
	}
	if len(a.Distributions) == 0 {
		add("Distributions is empty: give at least one (Codename and Architectures)")
	}
	names := map[string]string{} // codename or suite -> what it is
	for i, d := range a.Distributions {
		label := fmt.Sprintf("Distributions[%d]", i)
		switch {
		case d.Codename == "":
			add("%s: Codename is empty", label)
		case !archiveNameRe.MatchString(d.Codename):
			add("%s: Codename %q may only have letters, digits, '.', '_', '+' and '-'", label, d.Codename)
		case names[d.Codename] != "":
			add("%s: Codename %q is also the %s", label, d.Codename, names[d.Codename])
		default:
			label = fmt.Sprintf("Distributions[%d] (%s)", i, d.Codename)
			names[d.Codename] = "codename of " + label
		}
		if d.Suite != "" {
			switch {
			case !archiveNameRe.MatchString(d.Suite):
				add("%s: Suite %q may only have letters, digits, '.', '_', '+' and '-'", label, d.Suite)
			case names[d.Suite] != "":
				add("%s: Suite %q is also the %s", label, d.Suite, names[d.Suite])
			default:
				names[d.Suite] = "suite of " + label
			}
		}
		seen := map[string]bool{}
		for _, c := range d.Components {
			switch {
			case !archiveNameRe.MatchString(c):
				add("%s: Components: %q may only have letters, digits, '.', '_', '+' and '-'", label, c)
			case seen[c]:
				add("%s: Components: %q is listed twice", label, c)
			}
			seen[c] = true
		}
		if len(d.Architectures) == 0 {
			add("%s: Architectures is empty: list the Debian architectures, and \"source\" for source packages", label)
		}
		seen = map[string]bool{}
		for _, arch := range d.Architectures {
			switch {
			case !archiveArchRe.MatchString(arch):
				add("%s: Architectures: %q is not a Debian architecture name", label, arch)
			case seen[arch]:
				add("%s: Architectures: %q is listed twice", label, arch)
			}
			seen[arch] = true
		}
		if archiveHasControl(d.Description) {
			add("%s: Description has a line break or a control character", label)
		}
	}
	if archiveHasControl(a.Origin) {
		add("Origin has a line break or a control character")
	}
	if archiveHasControl(a.Label) {
		add("Label has a line break or a control character")
	}
	switch {
	case a.Unsigned && (a.SigningKey != "" || a.SigningKeySecret != ""):
		add("Unsigned is set and so is a signing key: sign (remove Unsigned) or not (remove the key)")
	case a.Unsigned:
	case a.SigningKey != "" && a.SigningKeySecret != "":
		add("SigningKey and SigningKeySecret are both set: give one")
	case a.SigningKey == "" && a.SigningKeySecret == "":
		add("no signing key: set SigningKeySecret (or SigningKey), or Unsigned for an unsigned archive (tests only)")
	case a.SigningKey != "":
		if err := archiveCheckKey(a.SigningKey); err != nil {
			add("SigningKey %v", err)
		}
	case archiveHasControl(a.SigningKeySecret):
		add("SigningKeySecret %q is not a secret name", a.SigningKeySecret)
	}
	if strings.ContainsRune(a.Reprepro, 0) {
		add("Reprepro %q is not a path", a.Reprepro)
	}
	return errors.Join(errs...)
}

// archiveServed reports whether the path p is in the served part of the
// archive in folder; both are absolute, or both relative to one folder.
func archiveServed(folder, p string) bool {
	rel, err := filepath.Rel(filepath.Join(folder, archivePublic), p)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))
}

// archiveHasControl reports whether s has a control character (a line
// break would start a new field in reprepro's configuration).
func archiveHasControl(s string) bool {
	return strings.ContainsFunc(s, func(r rune) bool { return r < ' ' || r == 0x7f })
}

// archiveCheckKey checks that text looks like an armoured secret key. Its
// message never quotes the text.
func archiveCheckKey(text string) error {
	t := strings.TrimSpace(text)
	switch {
	case strings.HasPrefix(t, archivePublicBegin):
		return errors.New("is a public key: the archive signs, so it needs the secret key (gpg --armor --export-secret-keys KEYID)")
	case !strings.HasPrefix(t, archivePrivateBegin) || !strings.Contains(t, archivePrivateEnd):
		// The message does not quote the armour lines: they are lines
		// of the secret, which the master's redactor hides.
		return errors.New("is not an ASCII-armoured OpenPGP secret key (gpg --armor --export-secret-keys KEYID gives one)")
	}
	return nil
}

// archiveState is an archive prepared by Run.
type archiveState struct {
	dir         string // Folder, absolute
	public      string // dir/public
	gnupg       string // dir/gnupg
	incoming    string // absolute
	reprepro    string // the program
	fingerprint string // of the signing key; "" when unsigned
	dists       map[string]Distribution
	files       http.Handler // the public folder
}

// Run implements ci.Service: it prepares the archive (folders,
// configuration, key, an export of every distribution), then serves it
// until ctx ends. A problem preparing it is returned, which stops the
// master: an archive that cannot sign must not serve.
func (a *Archive) Run(ctx context.Context, m *ci.Master) error {
	if err := a.Validate(); err != nil {
		return fmt.Errorf("%s: %w", a, err)
	}
	st, err := a.prepare(ctx, m)
	if st != nil && !a.Unsigned {
		// Stop the gpg-agent that importing the key, and reprepro's
		// signing, started for the archive's GnuPG home.
		defer archiveStopAgent(st.gnupg)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", a, err)
	}
	a.setState(st)
	defer a.setState(nil)
	<-ctx.Done()
	return nil
}

// lock waits for the archive's turn to run reprepro, and returns the
// function that gives it back; or ctx's error.
func (a *Archive) lock(ctx context.Context) (func(), error) {
	a.semOnce.Do(func() { a.sem = make(chan struct{}, 1) })
	select {
	case a.sem <- struct{}{}:
		return func() { <-a.sem }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// setState publishes st (nil: the archive is not running) and wakes those
// waiting for it.
func (a *Archive) setState(st *archiveState) {
	a.readyMu.Lock()
	defer a.readyMu.Unlock()
	a.state.Store(st)
	if a.ready == nil {
		a.ready = make(chan struct{})
	}
	if st != nil {
		close(a.ready)
	} else {
		select {
		case <-a.ready:
			a.ready = make(chan struct{})
		default:
		}
	}
}

// wait returns the prepared archive, waiting for Run to prepare it.
func (a *Archive) wait(ctx context.Context) (*archiveState, error) {
	for {
		a.readyMu.Lock()
		if a.ready == nil {
			a.ready = make(chan struct{})
		}
		st, ready := a.state.Load(), a.ready
		a.readyMu.Unlock()
		if st != nil {
			return st, nil
		}
		select {
		case <-ready:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// prepare makes the folders, the configuration and the key, and exports
// every distribution. It returns the state even on error once the GnuPG
// home is in use, so that Run stops its agent.
func (a *Archive) prepare(ctx context.Context, m *ci.Master) (*archiveState, error) {
	base := m.Config().BaseDir
	if base == "" {
		base = "."
	}
	resolve := func(p string) (string, error) {
		if !filepath.IsAbs(p) {
			p = filepath.Join(base, p)
		}
		return filepath.Abs(p)
	}
	st := &archiveState{dists: map[string]Distribution{}, reprepro: a.Reprepro}
	if st.reprepro == "" {
		st.reprepro = "reprepro"
	}
	var err error
	if st.dir, err = resolve(a.folder()); err != nil {
		return nil, err
	}
	if st.incoming, err = resolve(a.IncomingFolder()); err != nil {
		return nil, err
	}
	st.public = filepath.Join(st.dir, archivePublic)
	st.gnupg = filepath.Join(st.dir, archiveGnupg)
	if archiveServed(st.dir, st.incoming) {
		return nil, fmt.Errorf("Incoming %s is inside the folder the archive serves (%s): uploads would be public", st.incoming, st.public)
	}
	for _, d := range a.Distributions {
		if len(d.Components) == 0 {
			d.Components = []string{DefaultComponent}
		}
		st.dists[d.Codename] = d
	}
	for _, dir := range []string{st.dir, filepath.Join(st.dir, "conf"), st.public} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
	}
	if _, err := os.Stat(st.incoming); errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(st.incoming, 0o775); err != nil {
			return nil, err
		}
		// Whatever the umask, so that a group of uploaders can write.
		if err := os.Chmod(st.incoming, 0o775); err != nil {
			return nil, err
		}
	} else if err != nil {
		return nil, err
	}

	log := m.Logger().With("archive", st.dir)
	if a.Unsigned {
		log.Warn("the Debian archive is unsigned: its Release files have no signature, and apt accepts it only with [trusted=yes]; use Unsigned for tests only")
		for _, f := range []string{ArchiveKeyFile, ArchiveKeyArmoredFile} {
			if err := os.Remove(filepath.Join(st.public, f)); err != nil && !errors.Is(err, os.ErrNotExist) {
				return nil, err
			}
		}
		// Nothing of a former key is kept.
		if _, err := os.Stat(st.gnupg); err == nil {
			archiveStopAgent(st.gnupg)
			if err := os.RemoveAll(st.gnupg); err != nil {
				return nil, err
			}
		}
	} else {
		key := a.SigningKey
		if a.SigningKeySecret != "" {
			// The master redacts what its secrets give.
			if key, err = m.Secret(ctx, a.SigningKeySecret); err != nil {
				return nil, fmt.Errorf("SigningKeySecret: %w", err)
			}
			if err := archiveCheckKey(key); err != nil {
				return nil, fmt.Errorf("the secret %q %w", a.SigningKeySecret, err)
			}
		} else {
			m.Redactor().Add("archive signing key", key)
		}
		fpr, err := archiveImportKey(ctx, st.gnupg, key)
		st.fingerprint = fpr
		if err != nil {
			return st, err
		}
		if err := archiveExportKey(ctx, st.gnupg, fpr, st.public); err != nil {
			return st, err
		}
	}
	if err := a.writeConf(st); err != nil {
		return st, err
	}
	unlock, err := a.lock(ctx)
	if err != nil {
		return st, err
	}
	defer unlock()
	if _, err := st.run(ctx, nil, "export"); err != nil {
		return st, err
	}
	if slices.ContainsFunc(a.Distributions, func(d Distribution) bool { return d.Suite != "" }) {
		if _, err := st.run(ctx, nil, "createsymlinks"); err != nil {
			return st, err
		}
	}
	st.files = http.FileServer(http.Dir(st.public))
	log.Info("Debian archive ready", "distributions", a.Codenames(), "incoming", st.incoming, "key", st.fingerprint)
	return st, nil
}

// writeConf writes reprepro's conf/distributions and conf/options.
func (a *Archive) writeConf(st *archiveState) error {
	var b strings.Builder
	b.WriteString("# Written by Kiln's debian.Archive each time the master starts: edit its configuration instead.\n")
	for _, d := range a.Distributions {
		d := st.dists[d.Codename]
		b.WriteString("\nCodename: " + d.Codename + "\n")
		field := func(name, value string) {
			if value != "" {
				b.WriteString(name + ": " + value + "\n")
			}
		}
		field("Suite", d.Suite)
		field("Origin", a.Origin)
		field("Label", a.Label)
		field("Description", d.Description)
		field("Architectures", strings.Join(d.Architectures, " "))
		field("Components", strings.Join(d.Components, " "))
		field("SignWith", st.fingerprint)
	}
	if err := archiveWriteFile(filepath.Join(st.dir, "conf", "distributions"), []byte(b.String()), 0o644); err != nil {
		return err
	}
	options := "# Written by Kiln's debian.Archive: reprepro run by hand sees the archive as the master does.\n" +
		"outdir +b/" + archivePublic + "\n" +
		"gnupghome +b/" + archiveGnupg + "\n"
	return archiveWriteFile(filepath.Join(st.dir, "conf", "options"), []byte(options), 0o644)
}

// archiveWriteFile writes a file whole: a reader sees the old or the new.
func archiveWriteFile(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path)+"-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// archiveGPG runs gpg on a GnuPG home, in batch mode, with stdin as its
// input, and returns its standard output. Its error gives gpg's last
// message: gpg never repeats the key it was given.
func archiveGPG(ctx context.Context, home string, stdin []byte, args ...string) ([]byte, error) {
	argv := append([]string{"--homedir", home, "--batch", "--no-tty", "--pinentry-mode", "error"}, args...)
	cmd := exec.CommandContext(ctx, "gpg", argv...)
	cmd.Stdin = bytes.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), &archiveGPGError{err: err, stderr: stderr.String()}
	}
	return stdout.Bytes(), nil
}

// archiveGPGError is a failed gpg run.
type archiveGPGError struct {
	err    error
	stderr string
}

// Error gives the first line of gpg's that says what failed, else its
// last line: gpg ends with counters ("secret keys read: 1") that say
// nothing of the failure.
func (e *archiveGPGError) Error() string {
	for _, line := range strings.Split(e.stderr, "\n") {
		lower := strings.ToLower(line)
		if strings.Contains(lower, "error") || strings.Contains(lower, "failed") || strings.Contains(lower, "no agent") {
			return strings.TrimSpace(line)
		}
	}
	if line := archiveLastLine(e.stderr); line != "" {
		return line
	}
	return "gpg: " + e.err.Error()
}

// noPin reports whether gpg failed for want of a passphrase.
func (e *archiveGPGError) noPin() bool {
	return strings.Contains(e.stderr, "No pinentry") || strings.Contains(e.stderr, "Bad passphrase") ||
		strings.Contains(e.stderr, "Operation cancelled") || strings.Contains(e.stderr, "No passphrase given")
}

// archiveLastLine returns the last line of text that is not blank.
func archiveLastLine(text string) string {
	lines := strings.Split(strings.TrimSpace(text), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

// archiveSocketMax is the longest path a Unix socket may have on Linux
// (sun_path is 108 bytes, with the final NUL).
const archiveSocketMax = 107

// archiveImportKey imports the key into a fresh GnuPG home and returns its
// fingerprint, after checking that it signs without a passphrase.
func archiveImportKey(ctx context.Context, home, key string) (string, error) {
	// gpg-agent puts its sockets in /run/user/UID when that exists, else
	// in the home, where a long path cannot hold them; gpg then says only
	// that it found no agent.
	if _, err := os.Stat(fmt.Sprintf("/run/user/%d", os.Getuid())); err != nil {
		if n := len(filepath.Join(home, "S.gpg-agent.browser")); n > archiveSocketMax {
			return "", fmt.Errorf("the GnuPG home %s is too long a path for gpg-agent's sockets (%d characters with them, at most %d): give the archive a shorter Folder", home, n, archiveSocketMax)
		}
	}
	// A fresh home at every start: a replaced key leaves nothing behind.
	if _, err := os.Stat(home); err == nil {
		archiveStopAgent(home)
		if err := os.RemoveAll(home); err != nil {
			return "", err
		}
	}
	if err := os.Mkdir(home, 0o700); err != nil {
		return "", err
	}
	if err := os.Chmod(home, 0o700); err != nil {
		return "", err
	}
	if _, err := archiveGPG(ctx, home, []byte(key), "--import"); err != nil {
		return "", fmt.Errorf("import the signing key: %w", err)
	}
	out, err := archiveGPG(ctx, home, nil, "--with-colons", "--list-secret-keys")
	if err != nil {
		return "", fmt.Errorf("list the signing key: %w", err)
	}
	var fprs []string
	primary := false
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Split(line, ":")
		switch {
		case f[0] == "sec":
			primary = true
		case f[0] == "fpr" && primary && len(f) > 9:
			fprs = append(fprs, f[9])
			primary = false
		default:
			primary = false
		}
	}
	switch len(fprs) {
	case 0:
		return "", errors.New("the signing key holds no secret key")
	case 1:
	default:
		return "", fmt.Errorf("the signing key holds %d secret keys (%s): give one", len(fprs), strings.Join(fprs, ", "))
	}
	fpr := fprs[0]
	// Sign once, as reprepro will, with no one to type a passphrase.
	if _, err := archiveGPG(ctx, home, []byte("kiln\n"), "--local-user", fpr, "--detach-sign"); err != nil {
		var gerr *archiveGPGError
		if errors.As(err, &gerr) && gerr.noPin() {
			return fpr, fmt.Errorf("the signing key %s has a passphrase, and no one is there to type it when the archive signs: give the key without a passphrase (gpg --passwd, then an empty one) and keep it in a secret", fpr)
		}
		return fpr, fmt.Errorf("the signing key %s cannot sign: %w", fpr, err)
	}
	return fpr, nil
}

// archiveExportKey writes the public key beside the published tree.
func archiveExportKey(ctx context.Context, home, fpr, public string) error {
	for _, f := range []struct {
		name string
		args []string
	}{
		{ArchiveKeyFile, []string{"--export", fpr}},
		{ArchiveKeyArmoredFile, []string{"--armor", "--export", fpr}},
	} {
		out, err := archiveGPG(ctx, home, nil, f.args...)
		if err != nil {
			return fmt.Errorf("export the public key: %w", err)
		}
		if len(out) == 0 {
			return fmt.Errorf("export the public key: gpg gave nothing for %s", fpr)
		}
		if err := archiveWriteFile(filepath.Join(public, f.name), out, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// archiveStopAgent stops the gpg-agent of a GnuPG home, if one runs.
func archiveStopAgent(home string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "gpgconf", "--homedir", home, "--kill", "gpg-agent")
	_ = cmd.Run() // nothing to do if it fails: the agent ends with its home
}

// run runs reprepro on the archive and returns its standard output; the
// caller holds the archive's lock. When log is not nil, the command and its output go
// there. A failure is a *repreproError with reprepro's own message.
func (st *archiveState) run(ctx context.Context, log *ci.LogWriter, args ...string) (string, error) {
	return st.runLogged(ctx, log, true, args...)
}

// runLogged is run, with the command's output in the log only when
// output is true: the command, its exit code and its time go there in
// any case.
func (st *archiveState) runLogged(ctx context.Context, log *ci.LogWriter, output bool, args ...string) (string, error) {
	argv := append([]string{
		"--basedir", st.dir,
		"--outdir", st.public,
		"--gnupghome", st.gnupg,
		"--waitforlock", fmt.Sprint(archiveLockRetries),
	}, args...)
	cmd := exec.CommandContext(ctx, st.reprepro, argv...)
	cmd.Dir = st.dir
	cmd.Env = append(os.Environ(), "GNUPGHOME="+st.gnupg)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// SIGTERM, which reprepro handles by leaving its database in order;
	// SIGKILL only if it does not stop.
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }
	cmd.WaitDelay = archiveStopDelay
	var stdout, stderr bytes.Buffer
	var mu sync.Mutex
	outLog := log
	if !output {
		outLog = nil
	}
	cmd.Stdout = archiveTee(&mu, &stdout, outLog, (*ci.LogWriter).AddStdout)
	cmd.Stderr = archiveTee(&mu, &stderr, outLog, (*ci.LogWriter).AddStderr)
	if log != nil {
		log.AddHeader(fmt.Sprintf("%q\n in dir %s (on the master)\n", append([]string{st.reprepro}, argv...), st.dir))
		if !output {
			log.AddHeader("(its output is read by the step, not shown)\n")
		}
	}
	start := time.Now()
	err := cmd.Run()
	rc := 0
	var exitErr *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exitErr):
		rc = exitErr.ExitCode()
	default:
		rc = -1
	}
	if log != nil {
		if rc == -1 && exitErr == nil {
			log.AddHeader(fmt.Sprintf("cannot run reprepro: %v\n", err))
		}
		log.AddHeader(fmt.Sprintf("program finished with exit code %d\nelapsedTime=%f\n", rc, time.Since(start).Seconds()))
	}
	if err != nil {
		if ctx.Err() != nil {
			return stdout.String(), ctx.Err()
		}
		command := "run"
		if i := slices.IndexFunc(args, func(a string) bool { return !strings.HasPrefix(a, "-") }); i >= 0 {
			command = args[i]
		}
		return stdout.String(), &repreproError{command: command, rc: rc, line: repreproErrorLine(stderr.String(), err)}
	}
	return stdout.String(), nil
}

// archiveTee writes to buf, and to the log stream add when log is set.
func archiveTee(mu *sync.Mutex, buf *bytes.Buffer, log *ci.LogWriter, add func(*ci.LogWriter, string)) *archiveWriter {
	return &archiveWriter{write: func(p []byte) {
		mu.Lock()
		defer mu.Unlock()
		buf.Write(p)
		if log != nil {
			add(log, string(p))
		}
	}}
}

type archiveWriter struct{ write func([]byte) }

func (w *archiveWriter) Write(p []byte) (int, error) { w.write(p); return len(p), nil }

// repreproError is a reprepro run that failed, with the line of its output
// that says why.
type repreproError struct {
	command string
	rc      int
	line    string
}

func (e *repreproError) Error() string { return "reprepro " + e.command + ": " + e.line }

// repreproErrorLine picks, from what reprepro wrote on its standard error,
// the line that says what went wrong: the first that starts with "Error"
// or "ERROR", else the first that is neither a warning nor its closing
// "There have been errors!", else the exit status.
func repreproErrorLine(stderr string, err error) string {
	var rest []string
	for _, line := range strings.Split(stderr, "\n") {
		line = strings.TrimSpace(line)
		lower := strings.ToLower(line)
		switch {
		case line == "", line == "There have been errors!", strings.HasPrefix(lower, "warning"):
			continue
		case strings.HasPrefix(lower, "error"):
			return line
		}
		rest = append(rest, line)
	}
	if len(rest) > 0 {
		return rest[0]
	}
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) {
		return fmt.Sprintf("exit code %d", exitErr.ExitCode())
	}
	return err.Error()
}

// ServeHTTP serves the published archive, read-only: GET and HEAD of
// dists/ and pool/ (with folder listings) and of the key files
// ArchiveKeyFile and ArchiveKeyArmoredFile, at the root of the handler's
// paths (strip the prefix the archive is mounted at, see the type's
// documentation). The root is a short index of those. Anything else is
// 404: reprepro's conf/ and db/, the GnuPG home and the incoming folder
// are never served, nor are dotfiles or paths with "..". Before Run has
// prepared the archive, and after it returns, the answer is 503.
func (a *Archive) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	st := a.state.Load()
	if st == nil {
		w.Header().Set("Retry-After", "10")
		http.Error(w, "the archive is not ready", http.StatusServiceUnavailable)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "the archive is read-only", http.StatusMethodNotAllowed)
		return
	}
	p := r.URL.Path
	if p == "" || p == "/" {
		st.index(w, r)
		return
	}
	if !strings.HasPrefix(p, "/") || strings.ContainsAny(p, "\\\x00") {
		http.NotFound(w, r)
		return
	}
	parts := strings.Split(p[1:], "/")
	for i, part := range parts {
		// "" is a trailing slash (a folder) or a doubled one.
		if strings.HasPrefix(part, ".") || part == "" && i != len(parts)-1 {
			http.NotFound(w, r)
			return
		}
	}
	switch {
	case parts[0] == "dists" || parts[0] == "pool":
	case len(parts) == 1 && (parts[0] == ArchiveKeyFile || parts[0] == ArchiveKeyArmoredFile) && st.fingerprint != "":
	default:
		http.NotFound(w, r)
		return
	}
	if len(parts) == 1 {
		w.Header().Set("Content-Type", "application/pgp-keys") // a key file
	}
	st.files.ServeHTTP(w, r)
}

// index lists what the archive serves.
func (st *archiveState) index(w http.ResponseWriter, r *http.Request) {
	entries := []string{"dists/", "pool/"}
	if st.fingerprint != "" {
		entries = append(entries, ArchiveKeyFile, ArchiveKeyArmoredFile)
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	var b strings.Builder
	b.WriteString("<!doctype html>\n<title>Debian archive</title>\n<pre>\n")
	for _, e := range entries {
		fmt.Fprintf(&b, "<a href=\"%s\">%s</a>\n", e, e)
	}
	b.WriteString("</pre>\n")
	if r.Method == http.MethodGet {
		w.Write([]byte(b.String()))
	}
}
