package debian_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kilnci/kiln/ci"
	"github.com/kilnci/kiln/ci/citest"
	"github.com/kilnci/kiln/ci/secret"
	"github.com/kilnci/kiln/ci/steps"
	"github.com/kilnci/kiln/ci/steps/debian"
	"github.com/kilnci/kiln/internal/debtest"
	"github.com/kilnci/kiln/internal/testenv"
	"github.com/kilnci/kiln/webui"
)

// archiveChanges is the .changes dpkg-buildpackage makes of kiln-hello 1.0.
const archiveChanges = "kiln-hello_1.0_amd64.changes"

// archiveUpload lists the files of kiln-hello 1.0's upload.
var archiveUpload = []string{
	archiveChanges,
	"kiln-hello_1.0.dsc",
	"kiln-hello_1.0.tar.xz",
	"kiln-hello_1.0_amd64.deb",
	"kiln-hello-dbgsym_1.0_amd64.deb",
	"kiln-hello_1.0_amd64.buildinfo",
}

// archiveNeedTools skips the test (fails it under CI) without the tools
// an archive runs.
func archiveNeedTools(t *testing.T) {
	t.Helper()
	debtest.NeedTools(t, "reprepro", "gpg", "gpgconf", "gpgv")
}

// archiveTestKey generates an OpenPGP signing key in a GnuPG home of its
// own, with the passphrase given ("" for none), and returns its secret
// key ASCII-armoured.
func archiveTestKey(t *testing.T, passphrase string) string {
	t.Helper()
	home := t.TempDir()
	t.Cleanup(func() { exec.Command("gpgconf", "--homedir", home, "--kill", "gpg-agent").Run() })
	// A passphrase protects the key with few hashing rounds: the agent
	// would otherwise spend seconds on a key thrown away.
	require.NoError(t, os.WriteFile(filepath.Join(home, "gpg-agent.conf"), []byte("s2k-count 65536\n"), 0o600))
	gpg := func(args ...string) []byte {
		argv := append([]string{"--homedir", home, "--batch", "--no-tty", "--pinentry-mode", "loopback", "--passphrase", passphrase}, args...)
		cmd := exec.Command("gpg", argv...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		require.NoError(t, err, "gpg %s: %s", args[0], stderr.String())
		return out
	}
	gpg("--quick-gen-key", "Kiln Test Archive <archive@example.org>", "ed25519", "sign", "never")
	key := string(gpg("--armor", "--export-secret-keys"))
	require.Contains(t, key, "-----BEGIN PGP PRIVATE KEY BLOCK-----")
	return key
}

// archiveKeyLines returns the base64 lines of an armoured key: what must
// never show in a log.
func archiveKeyLines(key string) []string {
	var lines []string
	for _, l := range strings.Split(key, "\n") {
		l = strings.TrimSpace(l)
		if len(l) >= 20 && !strings.HasPrefix(l, "-----") {
			lines = append(lines, l)
		}
	}
	return lines
}

// archiveBuildHello builds kiln-hello 1.0, source and binaries, with
// dpkg-buildpackage on the host, and returns the folder of the upload.
func archiveBuildHello(t *testing.T) string {
	t.Helper()
	debtest.NeedTools(t, "dpkg-buildpackage", "dh")
	dir := t.TempDir()
	src := filepath.Join(dir, debtest.Package)
	require.NoError(t, debtest.Write(src, debtest.Source{}))
	cmd := exec.Command("dpkg-buildpackage", "-us", "-uc")
	cmd.Dir = src
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "dpkg-buildpackage:\n%s", out)
	for _, f := range archiveUpload {
		require.FileExists(t, filepath.Join(dir, f))
	}
	return dir
}

// archiveCopy copies the files of the upload from one folder to another.
func archiveCopy(t *testing.T, from, to string) {
	t.Helper()
	require.NoError(t, os.MkdirAll(to, 0o755))
	for _, f := range archiveUpload {
		b, err := os.ReadFile(filepath.Join(from, f))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(to, f), b, 0o644))
	}
}

// archiveTree returns the files under dir and their SHA-256.
func archiveTree(t *testing.T, dir string) map[string]string {
	t.Helper()
	tree := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		tree[rel] = fmt.Sprintf("%x", sha256.Sum256(b))
		return nil
	})
	require.NoError(t, err)
	return tree
}

// archiveGunzip returns the content of a gzip file (reprepro writes
// Sources.gz only).
func archiveGunzip(t *testing.T, name string) []byte {
	t.Helper()
	f, err := os.Open(name)
	require.NoError(t, err)
	defer f.Close()
	gz, err := gzip.NewReader(f)
	require.NoError(t, err)
	b, err := io.ReadAll(gz)
	require.NoError(t, err)
	return b
}

// archiveGet fetches a URL and returns its status and body.
func archiveGet(t *testing.T, url string) (int, []byte) {
	t.Helper()
	res, err := http.Get(url)
	require.NoError(t, err)
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	return res.StatusCode, body
}

// TestPublish publishes a real build of kiln-hello into a signed and an
// unsigned archive served by the master's web server, reads them with
// gpgv and apt-get, and checks every way a publish is refused.
func TestPublish(t *testing.T) {
	testenv.SkipIfShort(t, "builds a package, publishes it with reprepro and reads the archive with apt-get")
	archiveNeedTools(t)
	build := archiveBuildHello(t)
	key := archiveTestKey(t, "")

	// reprepro, through a wrapper that records each run, so that the test
	// can tell which steps ran it.
	tools := t.TempDir()
	calls := filepath.Join(tools, "calls")
	wrapper := filepath.Join(tools, "reprepro")
	require.NoError(t, os.WriteFile(wrapper, []byte("#!/bin/sh\nprintf '%s\\n' \"$*\" >>"+calls+"\nexec reprepro \"$@\"\n"), 0o755))
	countCalls := func(command string) int {
		b, _ := os.ReadFile(calls)
		n := 0
		for _, line := range strings.Split(string(b), "\n") {
			if line != "" && (command == "" || strings.Contains(" "+line+" ", " "+command+" ")) {
				n++
			}
		}
		return n
	}

	secrets := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(secrets, "archive-key"), []byte(key), 0o600))
	signed := &debian.Archive{
		Distributions: []debian.Distribution{
			{Codename: "bookworm", Suite: "stable", Architectures: []string{"amd64", "source"}, Description: "Kiln test packages"},
			{Codename: "trixie", Architectures: []string{"arm64", "source"}},
			{Codename: "bullseye", Architectures: []string{"amd64", "source"}},
		},
		Origin:           "Kiln",
		Label:            "Kiln tests",
		SigningKeySecret: "archive-key",
		Reprepro:         wrapper,
	}
	unsigned := &debian.Archive{
		Folder:        "unsigned",
		Distributions: []debian.Distribution{{Codename: "bookworm", Architectures: []string{"amd64", "source"}}},
		Unsigned:      true,
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	root := "http://" + ln.Addr().String()
	var masterLog testenv.SyncBuffer
	m := citest.Start(t, ci.MasterConfig{
		Workers: []ci.WorkerConfig{{Name: "w"}},
		Secrets: []ci.SecretProvider{secret.Dir{Path: secrets}},
		Builders: []ci.BuilderConfig{
			{Name: "publish", Workers: []string{"w"}, Steps: []ci.Step{
				&steps.DirectoryUpload{WorkerSrc: "out", MasterDest: signed.IncomingFolder()},
				&debian.Publish{Archive: signed, Distribution: "bookworm"},
			}},
			{Name: "publish-to", Workers: []string{"w"}, Steps: []ci.Step{
				&debian.Publish{Archive: signed, Distribution: ci.Prop("dist"), Changes: ci.Prop("changes")},
			}},
			{Name: "publish-to-2", Workers: []string{"w"}, Steps: []ci.Step{
				&debian.Publish{Archive: signed, Distribution: ci.Prop("dist"), Changes: ci.Prop("changes")},
			}},
			{Name: "publish-unsigned", Workers: []string{"w"}, Steps: []ci.Step{
				&steps.DirectoryUpload{WorkerSrc: "out", MasterDest: unsigned.IncomingFolder()},
				&debian.Publish{Archive: unsigned, Distribution: "bookworm"},
			}},
		},
		Services: []ci.Service{signed, unsigned, &webui.Server{Listener: ln, Mounts: map[string]http.Handler{
			"/debian/":   http.StripPrefix("/debian", signed),
			"/unsigned/": http.StripPrefix("/unsigned", unsigned),
		}}},
		Logger: slog.New(slog.NewTextHandler(&masterLog, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	dir := filepath.Join(m.Dir, "debian")
	public := filepath.Join(dir, "public")
	incoming := filepath.Join(dir, "incoming")
	upload := func(t *testing.T, builder string) {
		archiveCopy(t, build, filepath.Join(m.Dir, "workers", "w", builder, steps.DefaultWorkdir, "out"))
	}
	publishTo := func(t *testing.T, dist, changes string) *citest.Build {
		return m.Build(t, citest.Request{Builder: "publish-to", Properties: map[string]any{"dist": dist, "changes": changes}})
	}
	// The archive is ready once the web server answers for it.
	require.Eventually(t, func() bool {
		res, err := http.Get(root + "/debian/dists/bookworm/InRelease")
		if err != nil {
			return false
		}
		res.Body.Close()
		return res.StatusCode == http.StatusOK
	}, 30*time.Second, 20*time.Millisecond)

	t.Run("Prepared", func(t *testing.T) {
		// An archive with no package yet has signed Release files and its key.
		for _, f := range []string{"dists/bookworm/Release", "dists/bookworm/InRelease", "dists/bookworm/Release.gpg", "dists/trixie/InRelease", debian.ArchiveKeyFile, debian.ArchiveKeyArmoredFile} {
			assert.FileExists(t, filepath.Join(public, f))
		}
		release, err := os.ReadFile(filepath.Join(public, "dists/bookworm/Release"))
		require.NoError(t, err)
		for _, field := range []string{"Origin: Kiln\n", "Label: Kiln tests\n", "Suite: stable\n", "Codename: bookworm\n", "Description: Kiln test packages\n"} {
			assert.Contains(t, string(release), field)
		}
		assert.FileExists(t, filepath.Join(public, "dists/stable/Release"), "the suite links to its codename")
		fi, err := os.Stat(filepath.Join(dir, "gnupg"))
		require.NoError(t, err)
		assert.Equal(t, os.FileMode(0o700), fi.Mode().Perm())
		fi, err = os.Stat(incoming)
		require.NoError(t, err)
		assert.Equal(t, os.FileMode(0o775), fi.Mode().Perm())
		asc, err := os.ReadFile(filepath.Join(public, debian.ArchiveKeyArmoredFile))
		require.NoError(t, err)
		assert.Contains(t, string(asc), "-----BEGIN PGP PUBLIC KEY BLOCK-----")
	})

	t.Run("OK", func(t *testing.T) {
		upload(t, "publish")
		b := m.Build(t, citest.Request{Builder: "publish", Properties: map[string]any{"deb-changes": "build/out/" + archiveChanges}})
		require.Equal(t, ci.Success, b.Results(), b.LogLines("publish", "stdio"))
		assert.Equal(t, "published kiln-hello 1.0 (source, amd64) in bookworm/main", b.Step("publish").StateString)
		assert.Contains(t, b.Log("publish", "stdio"), "Exporting indices", "reprepro's output is in the log")
		header := b.Header("publish", "stdio")
		assert.Contains(t, header, "include")
		// Every reprepro run is in the log with its time: the listings
		// before and after the include without their output.
		assert.Equal(t, 2, strings.Count(header, `"listfilter"`), header)
		assert.Equal(t, 2, strings.Count(header, "(its output is read by the step, not shown)"), header)
		assert.Equal(t, 3, strings.Count(header, "elapsedTime="), header)
		assert.NotContains(t, b.Log("publish", "stdio"), "\tkiln-hello\t1.0\t", "a listing's output stays out of the log")

		pool := []string{
			"pool/main/k/kiln-hello/kiln-hello_1.0.dsc",
			"pool/main/k/kiln-hello/kiln-hello_1.0.tar.xz",
			"pool/main/k/kiln-hello/kiln-hello_1.0_amd64.deb",
			"pool/main/k/kiln-hello/kiln-hello-dbgsym_1.0_amd64.deb",
		}
		for _, f := range pool {
			assert.FileExists(t, filepath.Join(public, f))
		}
		packages, err := os.ReadFile(filepath.Join(public, "dists/bookworm/main/binary-amd64/Packages"))
		require.NoError(t, err)
		assert.Contains(t, string(packages), "Package: kiln-hello-dbgsym\n", "debug symbols are published beside the package")

		prop, ok := b.Property(debian.PropPublished).(map[string]any)
		require.True(t, ok, "%#v", b.Property(debian.PropPublished))
		assert.Equal(t, "bookworm", prop["distribution"])
		assert.Equal(t, "kiln-hello", prop["source"])
		assert.Equal(t, "1.0", prop["version"])
		assert.Equal(t, archiveChanges, prop["changes"])
		assert.Equal(t, []any{"main"}, prop["components"])
		assert.Equal(t, []any{"source", "amd64"}, prop["architectures"])
		assert.ElementsMatch(t, pool, prop["files"])

		left, err := os.ReadDir(incoming)
		require.NoError(t, err)
		assert.Empty(t, left, "the upload is removed from the incoming folder")

		// Release is signed with the archive's key, as apt checks it.
		keyring := filepath.Join(public, debian.ArchiveKeyFile)
		for _, args := range [][]string{
			{"dists/bookworm/InRelease"},
			{"dists/bookworm/Release.gpg", "dists/bookworm/Release"},
		} {
			cmd := exec.Command("gpgv", append([]string{"--keyring", keyring}, args...)...)
			cmd.Dir = public
			out, err := cmd.CombinedOutput()
			require.NoError(t, err, "gpgv %s:\n%s", args, out)
			assert.Contains(t, string(out), "Good signature")
		}
	})

	t.Run("HTTP", func(t *testing.T) {
		for _, f := range []string{"dists/bookworm/InRelease", "pool/main/k/kiln-hello/kiln-hello_1.0_amd64.deb", debian.ArchiveKeyFile, debian.ArchiveKeyArmoredFile} {
			res, err := http.Get(root + "/debian/" + f)
			require.NoError(t, err)
			body, err := io.ReadAll(res.Body)
			res.Body.Close()
			require.NoError(t, err)
			require.Equal(t, http.StatusOK, res.StatusCode, f)
			if strings.HasPrefix(f, "archive-key.") {
				assert.Equal(t, "application/pgp-keys", res.Header.Get("Content-Type"))
			}
			want, err := os.ReadFile(filepath.Join(public, f))
			require.NoError(t, err)
			assert.Equal(t, want, body, f)
		}
		for _, f := range []string{"", "dists/", "dists/bookworm/", "pool/main/k/kiln-hello/"} {
			code, _ := archiveGet(t, root+"/debian/"+f)
			assert.Equal(t, http.StatusOK, code, "listing of /%s", f)
		}
		code, body := archiveGet(t, root+"/debian/pool/main/k/kiln-hello/")
		require.Equal(t, http.StatusOK, code)
		assert.Contains(t, string(body), "kiln-hello_1.0_amd64.deb")
		for _, f := range []string{"conf/distributions", "conf/options", "conf/", "db/", "db/packages.db", "gnupg/", "gnupg/pubring.kbx", "incoming/", "public/dists/bookworm/InRelease", "dists/.hidden", ".git/config", "logs/"} {
			code, _ := archiveGet(t, root+"/debian/"+f)
			assert.Equal(t, http.StatusNotFound, code, f)
		}
		res, err := http.Post(root+"/debian/dists/bookworm/InRelease", "text/plain", strings.NewReader("x"))
		require.NoError(t, err)
		res.Body.Close()
		assert.Equal(t, http.StatusMethodNotAllowed, res.StatusCode)

		// Paths that a client or a proxy might not clean.
		for _, p := range []string{"/dists/../conf/distributions", "/pool/../../debian/conf/options", "/dists/%2e%2e/db/packages.db", "/dists//bookworm/InRelease", "/dists/bookworm\\..\\..\\conf"} {
			rec := httptest.NewRecorder()
			req := httptest.NewRequest(http.MethodGet, "/", nil)
			req.URL.Path = p
			if strings.Contains(p, "%") {
				req = httptest.NewRequest(http.MethodGet, p, nil)
			}
			signed.ServeHTTP(rec, req)
			assert.Equal(t, http.StatusNotFound, rec.Code, p)
		}
	})

	t.Run("Apt", func(t *testing.T) {
		apt := testenv.NeedTool(t, "apt-get")
		state := t.TempDir()
		code, pubkey := archiveGet(t, root+"/debian/"+debian.ArchiveKeyFile)
		require.Equal(t, http.StatusOK, code)
		keyring := filepath.Join(state, "kiln.gpg")
		require.NoError(t, os.WriteFile(keyring, pubkey, 0o644))
		for _, d := range []string{"etc/apt.conf.d", "etc/preferences.d", "etc/sources.list.d", "lists/partial", "cache/archives/partial", "download"} {
			require.NoError(t, os.MkdirAll(filepath.Join(state, d), 0o755))
		}
		require.NoError(t, os.WriteFile(filepath.Join(state, "status"), nil, 0o644))
		require.NoError(t, os.WriteFile(filepath.Join(state, "etc/sources.list"),
			[]byte(fmt.Sprintf("deb [signed-by=%s] %s/debian bookworm main\n", keyring, root)), 0o644))
		options := []string{
			"-o", "Dir::Etc=" + filepath.Join(state, "etc"),
			"-o", "Dir::State=" + state,
			"-o", "Dir::State::Lists=" + filepath.Join(state, "lists"),
			"-o", "Dir::State::status=" + filepath.Join(state, "status"),
			"-o", "Dir::Cache=" + filepath.Join(state, "cache"),
			"-o", "Debug::NoLocking=1",
			"-o", "Acquire::Languages=none",
			"-o", "Acquire::http::Proxy=DIRECT",
		}
		if os.Geteuid() == 0 {
			options = append(options, "-o", "APT::Sandbox::User=root")
		}
		run := func(args ...string) string {
			cmd := exec.Command(apt, append(options, args...)...)
			cmd.Dir = filepath.Join(state, "download")
			out, err := cmd.CombinedOutput()
			require.NoError(t, err, "apt-get %s:\n%s", args, out)
			return string(out)
		}
		out := run("update")
		assert.NotRegexp(t, `(?i)gpg|signature|signed|NO_PUBKEY|insecure`, out, "apt-get update trusts the archive")
		assert.Contains(t, out, "InRelease")
		run("download", "kiln-hello")
		got, err := os.ReadFile(filepath.Join(state, "download", "kiln-hello_1.0_amd64.deb"))
		require.NoError(t, err)
		want, err := os.ReadFile(filepath.Join(public, "pool/main/k/kiln-hello/kiln-hello_1.0_amd64.deb"))
		require.NoError(t, err)
		assert.Equal(t, want, got)
	})

	t.Run("Again", func(t *testing.T) {
		before := archiveTree(t, public)
		includes := countCalls("include")
		upload(t, "publish")
		b := m.Build(t, citest.Request{Builder: "publish", Properties: map[string]any{"deb-changes": "build/out/" + archiveChanges}})
		require.Equal(t, ci.Failure, b.Results())
		assert.Equal(t, "kiln-hello 1.0 (source, amd64) is already in bookworm; a version is published once: raise the version to publish again (failure)", b.Step("publish").StateString)
		assert.Equal(t, includes, countCalls("include"), "reprepro include did not run")
		assert.Equal(t, before, archiveTree(t, public), "the archive is unchanged")
		assert.FileExists(t, filepath.Join(incoming, archiveChanges), "a refused upload stays in the incoming folder")
	})

	t.Run("RepreproError", func(t *testing.T) {
		// trixie has arm64, not amd64: reprepro refuses the upload.
		b := publishTo(t, "trixie", archiveChanges)
		require.Equal(t, ci.Failure, b.Results())
		assert.Equal(t, "reprepro could not publish kiln-hello 1.0 (source, amd64) in trixie: Error: 'kiln-hello_1.0_amd64.deb' has the wrong architecture to add it to trixie! (failure)", b.Step("publish").StateString)
		assert.Contains(t, b.Log("publish", "stdio"), "There have been errors!")
		assert.Empty(t, archiveGunzip(t, filepath.Join(public, "dists/trixie/main/source/Sources.gz")), "trixie has no source package")
		assert.FileExists(t, filepath.Join(incoming, archiveChanges))
	})

	t.Run("BadName", func(t *testing.T) {
		runs := countCalls("")
		for _, name := range []string{"../x.changes", "a/b.changes", "x.deb", ".changes", ".hidden.changes", "..changes"} {
			b := publishTo(t, "bookworm", name)
			require.Equal(t, ci.Failure, b.Results(), name)
			assert.Equal(t, fmt.Sprintf("Changes %q is not a plain file name ending in .changes (failure)", name), b.Step("publish").StateString)
		}
		assert.Equal(t, runs, countCalls(""), "reprepro did not run")
	})

	t.Run("UnknownDistribution", func(t *testing.T) {
		runs := countCalls("")
		b := publishTo(t, "sid", archiveChanges)
		require.Equal(t, ci.Failure, b.Results())
		assert.Equal(t, `unknown distribution "sid": the archive has bookworm, trixie, bullseye (failure)`, b.Step("publish").StateString)
		assert.Equal(t, runs, countCalls(""), "reprepro did not run")
	})

	t.Run("Missing", func(t *testing.T) {
		b := publishTo(t, "bookworm", "nothere_1.0_amd64.changes")
		require.Equal(t, ci.Failure, b.Results())
		assert.Equal(t, "no nothere_1.0_amd64.changes in the incoming folder "+incoming+" (failure)", b.Step("publish").StateString)

		b = m.Build(t, citest.Request{Builder: "publish"})
		require.Equal(t, ci.Failure, b.Results())
		assert.Equal(t, "nothing to publish: Changes is not set and the build has no property deb-changes (Sbuild sets it) (failure)", b.Step("publish").StateString)
		b = publishTo(t, "bookworm", "")
		require.Equal(t, ci.Failure, b.Results())
		assert.Equal(t, "Changes is empty: give the name of a .changes file (failure)", b.Step("publish").StateString)

		// A listed file missing is named too.
		require.NoError(t, os.Remove(filepath.Join(incoming, "kiln-hello_1.0.tar.xz")))
		b = publishTo(t, "bookworm", archiveChanges)
		require.Equal(t, ci.Failure, b.Results())
		assert.Equal(t, archiveChanges+" lists kiln-hello_1.0.tar.xz, which is not in the incoming folder "+incoming+" (failure)", b.Step("publish").StateString)
	})

	t.Run("Concurrent", func(t *testing.T) {
		// Two builds publish at once: kiln-hello 2.0, source only, into
		// bookworm, where it replaces the source of 1.0, and 1.0 into
		// bullseye.
		src := filepath.Join(t.TempDir(), debtest.Package)
		require.NoError(t, debtest.Write(src, debtest.Source{Version: "2.0"}))
		cmd := exec.Command("dpkg-buildpackage", "-S", "-us", "-uc", "-nc")
		cmd.Dir = src
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "dpkg-buildpackage -S:\n%s", out)
		for _, f := range []string{"kiln-hello_2.0.dsc", "kiln-hello_2.0.tar.xz", "kiln-hello_2.0_source.buildinfo", "kiln-hello_2.0_source.changes"} {
			b, err := os.ReadFile(filepath.Join(filepath.Dir(src), f))
			require.NoError(t, err)
			require.NoError(t, os.WriteFile(filepath.Join(incoming, f), b, 0o644))
		}
		archiveCopy(t, build, incoming)

		first := m.Submit(t, citest.Request{Builder: "publish-to", Properties: map[string]any{"dist": "bookworm", "changes": "kiln-hello_2.0_source.changes"}})
		second := m.Submit(t, citest.Request{Builder: "publish-to-2", Properties: map[string]any{"dist": "bullseye", "changes": archiveChanges}})
		b := m.WaitBuildset(t, first)[0]
		require.Equal(t, ci.Success, b.Results(), b.LogLines("publish", "stdio"))
		assert.Equal(t, "published kiln-hello 2.0 (source) in bookworm/main", b.Step("publish").StateString)
		b = m.WaitBuildset(t, second)[0]
		require.Equal(t, ci.Success, b.Results(), b.LogLines("publish", "stdio"))
		assert.Equal(t, "published kiln-hello 1.0 (source, amd64) in bullseye/main", b.Step("publish").StateString)

		sources := archiveGunzip(t, filepath.Join(public, "dists/bookworm/main/source/Sources.gz"))
		assert.Contains(t, string(sources), "Version: 2.0\n")
		assert.NotContains(t, string(sources), "Version: 1.0\n")
		assert.FileExists(t, filepath.Join(public, "pool/main/k/kiln-hello/kiln-hello_2.0.dsc"))
		assert.FileExists(t, filepath.Join(public, "pool/main/k/kiln-hello/kiln-hello_1.0.dsc"), "bullseye has it")
		assert.Equal(t, countCalls(""), countCalls("--waitforlock"), "every run waits for a lock held outside the master")
	})

	t.Run("Unsigned", func(t *testing.T) {
		upload(t, "publish-unsigned")
		b := m.Build(t, citest.Request{Builder: "publish-unsigned", Properties: map[string]any{"deb-changes": archiveChanges}})
		require.Equal(t, ci.Success, b.Results(), b.LogLines("publish", "stdio"))
		assert.Equal(t, "published kiln-hello 1.0 (source, amd64) in bookworm/main; the archive is unsigned", b.Step("publish").StateString)
		pub := filepath.Join(m.Dir, "unsigned", "public")
		assert.FileExists(t, filepath.Join(pub, "dists/bookworm/Release"))
		assert.FileExists(t, filepath.Join(pub, "pool/main/k/kiln-hello/kiln-hello_1.0_amd64.deb"))
		for _, f := range []string{"dists/bookworm/InRelease", "dists/bookworm/Release.gpg", debian.ArchiveKeyFile} {
			assert.NoFileExists(t, filepath.Join(pub, f))
		}
		code, _ := archiveGet(t, root+"/unsigned/dists/bookworm/Release")
		assert.Equal(t, http.StatusOK, code)
		code, _ = archiveGet(t, root+"/unsigned/"+debian.ArchiveKeyFile)
		assert.Equal(t, http.StatusNotFound, code)
		assert.Contains(t, masterLog.String(), "the Debian archive is unsigned")
	})

	t.Run("KeyNotShown", func(t *testing.T) {
		ctx := context.Background()
		var texts []string
		builds, _, err := m.Store.ListBuilds(ctx, ci.BuildQuery{})
		require.NoError(t, err)
		require.NotEmpty(t, builds)
		for _, b := range builds {
			texts = append(texts, b.StateString)
			stepRecs, err := m.Store.ListSteps(ctx, b.ID)
			require.NoError(t, err)
			for _, s := range stepRecs {
				texts = append(texts, s.StateString)
				logs, err := m.Store.ListLogs(ctx, s.ID)
				require.NoError(t, err)
				for _, l := range logs {
					text, err := m.Store.LogLines(ctx, l.ID, 0, -1)
					require.NoError(t, err)
					texts = append(texts, text)
				}
			}
		}
		texts = append(texts, masterLog.String())
		all := strings.Join(texts, "\n")
		require.Contains(t, all, "published kiln-hello")
		for _, line := range archiveKeyLines(key) {
			assert.NotContains(t, all, line)
		}
		assert.Equal(t, `Debian archive "debian" Debian archive "debian"`, fmt.Sprintf("%v %#v", signed, signed), "printing an archive shows no key")
	})
}

// TestPublish_Components publishes into a distribution of two components
// a package whose section names the second: it is in that component's
// indices, and in no other's.
func TestPublish_Components(t *testing.T) {
	testenv.SkipIfShort(t, "builds a package and publishes it with reprepro")
	archiveNeedTools(t)
	archive := &debian.Archive{
		Distributions: []debian.Distribution{{Codename: "bookworm", Components: []string{"main", "contrib"}, Architectures: []string{"amd64", "source"}}},
		Unsigned:      true,
	}
	m := citest.Start(t, ci.MasterConfig{
		BaseDir:  t.TempDir(),
		Workers:  []ci.WorkerConfig{{Name: "w"}},
		Builders: []ci.BuilderConfig{{Name: "publish", Workers: []string{"w"}, Steps: []ci.Step{&debian.Publish{Archive: archive, Distribution: "bookworm"}}}},
		Services: []ci.Service{archive},
	})
	changes := builtPackage(t, debtest.Source{Version: "1.4", Section: "contrib/misc"}, filepath.Join(m.Dir, archive.IncomingFolder()))
	b := m.Build(t, citest.Request{Builder: "publish", Properties: map[string]any{debian.PropChanges: "out/" + changes}})
	require.Equal(t, ci.Success, b.Results(), b.LogLines("publish", "stdio"))
	assert.Equal(t, "published kiln-hello 1.4 (source, amd64) in bookworm/contrib; the archive is unsigned", b.Step("publish").StateString)
	prop, ok := b.Property(debian.PropPublished).(map[string]any)
	require.True(t, ok, "%#v", b.Property(debian.PropPublished))
	assert.Equal(t, []any{"contrib"}, prop["components"])

	dists := filepath.Join(m.Dir, "debian", "public", "dists", "bookworm")
	read := func(name string) string {
		t.Helper()
		if strings.HasSuffix(name, ".gz") {
			return string(archiveGunzip(t, filepath.Join(dists, name)))
		}
		b, err := os.ReadFile(filepath.Join(dists, name))
		require.NoError(t, err)
		return string(b)
	}
	packages := read("contrib/binary-amd64/Packages")
	assert.Contains(t, packages, "Package: kiln-hello\n")
	assert.Contains(t, packages, "Package: kiln-hello-dbgsym\n")
	assert.Contains(t, packages, "Filename: pool/contrib/k/kiln-hello/kiln-hello_1.4_amd64.deb\n")
	assert.Contains(t, packages, "Section: contrib/misc\n")
	sources := read("contrib/source/Sources.gz")
	assert.Contains(t, sources, "Package: kiln-hello\n")
	assert.Contains(t, sources, "Version: 1.4\n")
	assert.Contains(t, sources, "Directory: pool/contrib/k/kiln-hello\n")
	assert.Empty(t, read("main/binary-amd64/Packages"), "main has nothing")
	assert.Empty(t, read("main/source/Sources.gz"))
	assert.FileExists(t, filepath.Join(m.Dir, "debian", "public", "pool", "contrib", "k", "kiln-hello", "kiln-hello_1.4_amd64.deb"))
	assert.NoDirExists(t, filepath.Join(m.Dir, "debian", "public", "pool", "main"))
	release := read("Release")
	assert.Contains(t, release, "Components: main contrib\n")
	assert.Contains(t, release, " contrib/binary-amd64/Packages\n")
}

// TestArchive_Passphrase checks that a key with a passphrase stops the
// master with a message saying so, and without the key.
func TestArchive_Passphrase(t *testing.T) {
	archiveNeedTools(t)
	key := archiveTestKey(t, "correct horse battery staple")
	var log testenv.SyncBuffer
	m, err := ci.NewMaster(ci.MasterConfig{
		BaseDir: t.TempDir(),
		Services: []ci.Service{&debian.Archive{
			Distributions: []debian.Distribution{{Codename: "bookworm", Architectures: []string{"amd64", "source"}}},
			SigningKey:    key,
		}},
		Logger: slog.New(slog.NewTextHandler(&log, nil)),
	})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err = m.Run(ctx)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "has a passphrase, and no one is there to type it when the archive signs")
	for _, line := range archiveKeyLines(key) {
		assert.NotContains(t, err.Error(), line)
		assert.NotContains(t, log.String(), line)
	}
}

// TestArchive_LongFolder checks that a GnuPG home too long a path for
// gpg-agent's sockets is said so, rather than "no agent running".
func TestArchive_LongFolder(t *testing.T) {
	archiveNeedTools(t)
	if _, err := os.Stat(fmt.Sprintf("/run/user/%d", os.Getuid())); err == nil {
		t.Skip("gpg-agent puts its sockets in /run/user here, whatever the path of the GnuPG home")
	}
	key := archiveTestKey(t, "")
	folder := filepath.Join(t.TempDir(), strings.Repeat("long-folder-name/", 6))
	m, err := ci.NewMaster(ci.MasterConfig{
		BaseDir: t.TempDir(),
		Services: []ci.Service{&debian.Archive{
			Folder:        folder,
			Distributions: []debian.Distribution{{Codename: "bookworm", Architectures: []string{"amd64", "source"}}},
			SigningKey:    key,
		}},
		Logger: slog.New(slog.DiscardHandler),
	})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err = m.Run(ctx)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "is too long a path for gpg-agent's sockets")
}

func TestArchive_NotReady(t *testing.T) {
	a := &debian.Archive{Distributions: []debian.Distribution{{Codename: "bookworm", Architectures: []string{"amd64"}}}, Unsigned: true}
	rec := httptest.NewRecorder()
	a.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/dists/bookworm/Release", nil))
	assert.Equal(t, http.StatusServiceUnavailable, rec.Code)
}

func TestArchive_Validate(t *testing.T) {
	const secret = "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nmDMEZsecretsecretsecretsecret\n-----END PGP PUBLIC KEY BLOCK-----\n"
	bookworm := []debian.Distribution{{Codename: "bookworm", Architectures: []string{"amd64", "source"}}}
	for _, tt := range []struct {
		name    string
		archive *debian.Archive
		want    []string
	}{
		{name: "OK", archive: &debian.Archive{Distributions: bookworm, SigningKeySecret: "key"}},
		{name: "OKUnsigned", archive: &debian.Archive{Distributions: bookworm, Unsigned: true}},
		{name: "Zero", archive: &debian.Archive{}, want: []string{
			"Distributions is empty",
			"no signing key: set SigningKeySecret (or SigningKey), or Unsigned",
		}},
		{name: "Distributions", archive: &debian.Archive{Unsigned: true, Distributions: []debian.Distribution{
			{Architectures: []string{"amd64"}},
			{Codename: "bookworm", Suite: "stable", Components: []string{"main", "main", "a/b"}, Architectures: []string{"amd64", "AMD64", "amd64"}, Description: "two\nlines"},
			{Codename: "stable", Architectures: []string{"arm64"}},
			{Codename: "../up"},
		}}, want: []string{
			"Distributions[0]: Codename is empty",
			`Distributions[1] (bookworm): Components: "main" is listed twice`,
			`Distributions[1] (bookworm): Components: "a/b" may only have`,
			`Distributions[1] (bookworm): Architectures: "AMD64" is not a Debian architecture name`,
			`Distributions[1] (bookworm): Architectures: "amd64" is listed twice`,
			"Distributions[1] (bookworm): Description has a line break",
			`Distributions[2]: Codename "stable" is also the suite of Distributions[1] (bookworm)`,
			`Distributions[3]: Codename "../up" may only have letters`,
			"Distributions[3]: Architectures is empty",
		}},
		{name: "Fields", archive: &debian.Archive{Distributions: bookworm, Unsigned: true, Origin: "a\nb", Label: "c\rd"}, want: []string{
			"Origin has a line break", "Label has a line break",
		}},
		{name: "IncomingServed", archive: &debian.Archive{Distributions: bookworm, Unsigned: true, Incoming: "debian/public/pool/in"}, want: []string{
			`Incoming "debian/public/pool/in" is inside the folder the archive serves (debian/public): uploads would be public`,
		}},
		{name: "IncomingBeside", archive: &debian.Archive{Distributions: bookworm, Unsigned: true, Folder: "/srv/apt", Incoming: "/srv/apt/public-uploads"}},
		{name: "PublicKey", archive: &debian.Archive{Distributions: bookworm, SigningKey: secret}, want: []string{
			"SigningKey is a public key: the archive signs, so it needs the secret key",
		}},
		{name: "NotAKey", archive: &debian.Archive{Distributions: bookworm, SigningKey: "mDMEZsecretsecretsecretsecret"}, want: []string{
			"SigningKey is not an ASCII-armoured OpenPGP secret key",
		}},
		{name: "TwoKeys", archive: &debian.Archive{Distributions: bookworm, SigningKey: secret, SigningKeySecret: "key"}, want: []string{
			"SigningKey and SigningKeySecret are both set",
		}},
		{name: "UnsignedWithKey", archive: &debian.Archive{Distributions: bookworm, SigningKeySecret: "key", Unsigned: true}, want: []string{
			"Unsigned is set and so is a signing key",
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.archive.Validate()
			if len(tt.want) == 0 {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			lines := strings.Split(err.Error(), "\n")
			assert.Len(t, lines, len(tt.want), err.Error())
			for _, w := range tt.want {
				assert.Contains(t, err.Error(), w)
			}
			assert.NotContains(t, err.Error(), "secretsecret", "the key is never quoted")
		})
	}
}

func TestPublish_Validate(t *testing.T) {
	archive := &debian.Archive{Distributions: []debian.Distribution{{Codename: "bookworm", Architectures: []string{"amd64", "source"}}}, Unsigned: true}
	for _, tt := range []struct {
		name string
		step *debian.Publish
		want []string
	}{
		{name: "OK", step: &debian.Publish{Archive: archive, Distribution: "bookworm"}},
		{name: "OKRenderables", step: &debian.Publish{Archive: archive, Distribution: ci.Prop("dist"), Changes: ci.Interpolate("%(prop:changes)s")}},
		{name: "Zero", step: &debian.Publish{}, want: []string{"Archive is not set", "Distribution is not set"}},
		{name: "UnknownDistribution", step: &debian.Publish{Archive: archive, Distribution: "sid"}, want: []string{
			`Distribution "sid" is not one of the archive's (bookworm)`,
		}},
		{name: "BadChanges", step: &debian.Publish{Archive: archive, Distribution: "bookworm", Changes: "../x.changes"}, want: []string{
			`Changes "../x.changes" is not a plain file name ending in .changes`,
		}},
		{name: "BadValue", step: &debian.Publish{Archive: archive, Distribution: []int{1}, Changes: struct{}{}}, want: []string{
			"Distribution: a []int", "Changes: a struct {}",
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.step.Validate()
			if len(tt.want) == 0 {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			for _, w := range tt.want {
				assert.Contains(t, err.Error(), w)
			}
		})
	}

	t.Run("ArchiveNotAService", func(t *testing.T) {
		cfg := ci.MasterConfig{
			Workers:  []ci.WorkerConfig{{Name: "w"}},
			Builders: []ci.BuilderConfig{{Name: "b", Workers: []string{"w"}, Steps: []ci.Step{&debian.Publish{Archive: archive, Distribution: "bookworm"}}}},
		}
		err := cfg.Validate()
		require.Error(t, err)
		assert.Contains(t, err.Error(), `builder "b": Steps[0] (publish): Archive (Debian archive "debian") is not in the master's Services`)
		cfg.Services = []ci.Service{archive}
		require.NoError(t, cfg.Validate())
	})
}

// An Archive kept by the master, served by its web server under /debian/,
// and a builder that uploads what sbuild made to the archive's incoming
// folder and publishes it.
func ExampleArchive() {
	archive := &debian.Archive{
		Folder: "debian", // in the master's base folder
		Distributions: []debian.Distribution{{
			Codename:      "bookworm",
			Suite:         "stable",
			Architectures: []string{"amd64", "arm64", "source"},
			Description:   "Ideascube packages",
		}},
		Origin:           "Ideascube",
		Label:            "Ideascube",
		SigningKeySecret: "archive-signing-key", // a file in /etc/kiln/secrets
	}
	cfg := ci.MasterConfig{
		Workers: []ci.WorkerConfig{{Name: "builder-1", Password: "s3cret-password"}},
		Secrets: []ci.SecretProvider{secret.Dir{Path: "/etc/kiln/secrets"}},
		Builders: []ci.BuilderConfig{{
			Name:    "kiln-hello",
			Workers: []string{"builder-1"},
			Steps: []ci.Step{
				&steps.RemoveDirectory{Dir: "out"},
				// ... check out, then build with debian.Sbuild and
				// BuildDir "out", which leaves the upload in out/ and sets
				// the property deb-changes to its .changes ...
				&steps.DirectoryUpload{Workdir: ".", WorkerSrc: "out", MasterDest: archive.IncomingFolder()},
				&debian.Publish{Archive: archive, Distribution: "bookworm"},
			},
		}},
		Services: []ci.Service{
			archive,
			&webui.Server{Mounts: map[string]http.Handler{
				"/debian/": http.StripPrefix("/debian", archive),
			}},
		},
	}
	fmt.Println(cfg.Validate())
	fmt.Println(archive.IncomingFolder())
	// Apt then reads it with:
	//   deb [signed-by=/usr/share/keyrings/ideascube.gpg] http://master:8010/debian bookworm main
	// where ideascube.gpg is http://master:8010/debian/archive-key.gpg.

	// Output:
	// <nil>
	// debian/incoming
}
