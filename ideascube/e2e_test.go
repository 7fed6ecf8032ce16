//go:build unix

package main

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"database/sql"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	_ "github.com/kilnci/kiln/ci/sqlite"
	"github.com/kilnci/kiln/internal/debtest"
	"github.com/kilnci/kiln/internal/testenv"
)

// The binaries of the end-to-end tests, built once.
var bins struct{ master, worker string }

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "ideascube-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	// The programs run as the build user: they must be able to reach them.
	os.Chmod(dir, 0o755)
	bins.master = filepath.Join(dir, "ideascube")
	bins.worker = filepath.Join(dir, "kiln-worker")
	for out, pkg := range map[string]string{bins.master: "github.com/kilnci/kiln/ideascube", bins.worker: "github.com/kilnci/kiln/cmd/kiln-worker"} {
		cmd := exec.Command("go", "build", "-o", out, pkg)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if b, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "build %s: %v\n%s", pkg, err, b)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// freeAddr returns a loopback address nothing listens on.
func freeAddr(t testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	return ln.Addr().String()
}

func git(t testing.TB, dir string, args ...string) {
	t.Helper()
	cmd := exec.Command("git", append([]string{"-c", "user.name=Ideascube", "-c", "user.email=dev@ideascube.invalid",
		"-c", "safe.directory=*"}, args...)...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "git %v: %s", args, out)
}

// proc is a process of the test, killed when it ends.
type proc struct {
	cmd  *exec.Cmd
	out  *testenv.SyncBuffer
	done chan struct{}
}

// start starts a program, as the build user when u is not nil.
func start(t testing.TB, u *debtest.BuildUser, env []string, name string, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(name, args...), out: &testenv.SyncBuffer{}, done: make(chan struct{})}
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if u != nil {
		p.cmd.SysProcAttr.Credential = u.Credential()
	}
	require.NoError(t, p.cmd.Start())
	go func() {
		p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
		if t.Failed() {
			out := p.out.String()
			if len(out) > 20000 {
				out = "...\n" + out[len(out)-20000:]
			}
			t.Logf("%s:\n%s", filepath.Base(name), out)
		}
	})
	return p
}

// web is the master's web address, with helpers.
type web struct {
	t    testing.TB
	base string
}

func (w web) get(path string, v any) {
	w.t.Helper()
	resp, err := http.Get(w.base + path)
	require.NoError(w.t, err)
	defer resp.Body.Close()
	require.Equal(w.t, http.StatusOK, resp.StatusCode, path)
	require.NoError(w.t, json.NewDecoder(resp.Body).Decode(v))
}

// fetch returns the body of a GET, and its status.
func (w web) fetch(path string) (int, []byte) {
	w.t.Helper()
	resp, err := http.Get(w.base + path)
	require.NoError(w.t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(w.t, err)
	return resp.StatusCode, b
}

func (w web) total(path string) int {
	var ans struct {
		Meta struct {
			Total int `json:"total"`
		} `json:"meta"`
	}
	w.get(path, &ans)
	return ans.Meta.Total
}

// waitFor polls cond until the deadline.
func (w web) waitFor(what string, limit time.Duration, cond func() bool) {
	w.t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		require.True(w.t, time.Now().Before(deadline), "timed out waiting for %s", what)
		time.Sleep(100 * time.Millisecond)
	}
}

// github posts a GitHub event signed with secret.
func (w web) github(event, secret string, payload any) (int, string) {
	w.t.Helper()
	body, err := json.Marshal(payload)
	require.NoError(w.t, err)
	req, _ := http.NewRequest(http.MethodPost, w.base+"/change_hook/github", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-GitHub-Event", event)
	req.Header.Set("X-GitHub-Delivery", fmt.Sprintf("delivery-%d", time.Now().UnixNano()))
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	req.Header.Set("X-Hub-Signature-256", "sha256="+hex.EncodeToString(mac.Sum(nil)))
	resp, err := http.DefaultClient.Do(req)
	require.NoError(w.t, err)
	defer resp.Body.Close()
	text, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(text)
}

// force forces a build of a builder, as the admin would from the web page.
func (w web) force(user, pass string, builderID int, branch string) int {
	w.t.Helper()
	body := fmt.Sprintf(`{"jsonrpc": "2.0", "method": "force", "params": {"builderid": %d, "branch": %q, "reason": "rebuild"}, "id": 1}`, builderID, branch)
	req, _ := http.NewRequest(http.MethodPost, w.base+"/api/v2/forceschedulers/force", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(w.t, err)
	resp.Body.Close()
	return resp.StatusCode
}

func createEvent(refType, ref, cloneURL string) map[string]any {
	return map[string]any{
		"ref": ref, "ref_type": refType, "master_branch": "master", "description": "Ideascube", "pusher_type": "user",
		"repository": map[string]any{"id": 1, "name": "ideascube", "full_name": "ideascube/ideascube", "clone_url": cloneURL,
			"html_url": "https://github.com/ideascube/ideascube"},
		"sender": map[string]any{"login": "alice", "id": 2},
	}
}

// build is a build as the API shows it.
type build struct {
	BuildID   int  `json:"buildid"`
	BuilderID int  `json:"builderid"`
	WorkerID  int  `json:"workerid"`
	Complete  bool `json:"complete"`
	Results   *int `json:"results"`
}

// step is a step as the API shows it.
type step struct {
	Name        string `json:"name"`
	StateString string `json:"state_string"`
	Results     *int   `json:"results"`
}

// steps returns a build's steps by name, and their names in order.
func (w web) steps(buildID int) (map[string]step, []string) {
	w.t.Helper()
	var ans struct {
		Steps []step `json:"steps"`
	}
	w.get(fmt.Sprintf("/api/v2/builds/%d/steps", buildID), &ans)
	byName := map[string]step{}
	var names []string
	for _, s := range ans.Steps {
		byName[s.Name] = s
		names = append(names, s.Name)
	}
	return byName, names
}

// builds returns the complete builds whose IDs are above after.
func (w web) builds(after int) []build {
	w.t.Helper()
	var ans struct {
		Builds []build `json:"builds"`
	}
	w.get("/api/v2/builds?complete=true", &ans)
	var out []build
	for _, b := range ans.Builds {
		if b.BuildID > after {
			out = append(out, b)
		}
	}
	return out
}

// Results, as the API gives them.
const (
	success = 0
	failure = 2
)

// deployment is a master and its two workers, run as the build user in
// a folder of their own, as the guide deploys them.
type deployment struct {
	web
	t        testing.TB
	user     debtest.BuildUser
	top      string // everything of the test, owned by the build user
	dir      string // the master's folder
	repo     string // the ideascube repository
	master   *proc
	workers  map[string]*proc
	builders map[string]int // builder name to ID
	workerID map[string]int // worker name to ID
}

// The secrets of the test deployment.
const deploySecrets = "IDEASCUBE_WORKER_AMD64_PASSWORD=amd64 pass\nIDEASCUBE_WORKER_ARMHF_PASSWORD=armhf pass\n" +
	"IDEASCUBE_ADMIN_USER=admin\nIDEASCUBE_ADMIN_PASSWORD=admin pass\nIDEASCUBE_GITHUB_SECRET=gh-secret\nIDEASCUBE_GITLAB_SECRET=gl-token\n"

// deploy writes the repository (tags: 1.0 builds, 1.1's debian/rules
// fails, 1.2 has a lintian error), starts the master with flags and the
// two workers, each with its own home and dput configuration (dput
// hosts: the names given), and waits for the workers to attach.
func deploy(t testing.TB, flags []string, dputHosts map[string][]string) *deployment {
	t.Helper()
	u := debtest.User(t)
	top, err := os.MkdirTemp("", "ideascube-deploy-")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(top) })
	require.NoError(t, os.Chmod(top, 0o755))
	d := &deployment{t: t, user: u, top: top, dir: filepath.Join(top, "master"), repo: filepath.Join(top, "ideascube"),
		workers: map[string]*proc{}, builders: map[string]int{}, workerID: map[string]int{}}

	// The repository, with a tag for each case.
	require.NoError(t, os.MkdirAll(d.repo, 0o755))
	git(t, d.repo, "init", "-q", "-b", "master")
	for _, tag := range []struct {
		name string
		src  debtest.Source
	}{
		{"1.0", debtest.Source{Version: "1.0"}},
		{"1.1", debtest.Source{Version: "1.1", FailingRules: true}},
		{"1.2", debtest.Source{Version: "1.2", LintianError: true}},
	} {
		git(t, d.repo, "rm", "-rq", "--ignore-unmatch", ".")
		require.NoError(t, debtest.Write(d.repo, tag.src))
		git(t, d.repo, "add", "-A", ".")
		git(t, d.repo, "commit", "-qm", "Release "+tag.name)
		git(t, d.repo, "tag", "-a", tag.name, "-m", "Release "+tag.name)
	}

	require.NoError(t, os.MkdirAll(d.dir, 0o755))
	require.NoError(t, os.MkdirAll(filepath.Join(top, "home-master"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(d.dir, "secrets.env"), []byte(deploySecrets), 0o600))
	incoming := filepath.Join(d.dir, "debian", "incoming")
	require.NoError(t, os.MkdirAll(incoming, 0o755))
	for name, hosts := range dputHosts {
		home := filepath.Join(top, "home-"+name)
		require.NoError(t, os.MkdirAll(home, 0o755))
		var cf strings.Builder
		for _, h := range hosts {
			cf.WriteString(dputLocalHost(h, incoming) + "\n")
		}
		require.NoError(t, os.WriteFile(filepath.Join(home, ".dput.cf"), []byte(cf.String()), 0o644))
	}
	return d
}

// start starts the master with flags, then the workers.
func (d *deployment) start(flags ...string) {
	t := d.t
	require.NoError(t, d.user.Chown(d.top))
	httpAddr, workerAddr := freeAddr(t), freeAddr(t)
	args := append([]string{"-basedir", d.dir, "-http", httpAddr, "-workers", workerAddr, "-url", "http://" + httpAddr + "/",
		"-repo", d.repo, "-dist", "bookworm", "-extra-repository", "", "-resolver", "apt", "-metrics", freeAddr(t)}, flags...)
	d.master = start(t, &d.user, []string{"HOME=" + filepath.Join(d.top, "home-master")}, bins.master, args...)
	d.web = web{t: t, base: "http://" + httpAddr}
	d.waitFor("the master to serve", time.Minute, func() bool {
		resp, err := http.Get(d.base + "/api/v2/builders")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil && resp.StatusCode == http.StatusOK
	})
	for name, pass := range map[string]string{"worker-amd64": "amd64 pass", "worker-armhf": "armhf pass"} {
		dir := filepath.Join(d.top, name)
		home := filepath.Join(d.top, "home-"+name)
		require.NoError(t, os.MkdirAll(home, 0o755))
		cmd := exec.Command(bins.worker, "create-worker", dir, workerAddr, name, pass)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: d.user.Credential()}
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "%s", out)
		require.NoError(t, d.user.Chown(home))
		d.workers[name] = start(t, &d.user, []string{"HOME=" + home, "USER=" + d.user.Name, "LOGNAME=" + d.user.Name}, bins.worker, "start", dir)
	}
	d.waitFor("both workers to attach", time.Minute, func() bool {
		var ans struct {
			Workers []struct {
				WorkerID    int    `json:"workerid"`
				Name        string `json:"name"`
				ConnectedTo []any  `json:"connected_to"`
			} `json:"workers"`
		}
		d.get("/api/v2/workers", &ans)
		n := 0
		for _, wk := range ans.Workers {
			if len(wk.ConnectedTo) > 0 {
				d.workerID[wk.Name] = wk.WorkerID
				n++
			}
		}
		return n == 2
	})
	var builders struct {
		Builders []struct {
			BuilderID int    `json:"builderid"`
			Name      string `json:"name"`
		} `json:"builders"`
	}
	d.get("/api/v2/builders", &builders)
	for _, b := range builders.Builders {
		d.builders[b.Name] = b.BuilderID
	}
}

// writeArchiveKey makes the archive's signing key as the guide says, in
// the master's folder.
func (d *deployment) writeArchiveKey() {
	t := d.t
	gnupg := filepath.Join(d.top, "gnupg")
	require.NoError(t, os.MkdirAll(gnupg, 0o700))
	gpg := func(args ...string) []byte {
		cmd := exec.Command("gpg", append([]string{"--homedir", gnupg, "--batch", "--quiet"}, args...)...)
		out, err := cmd.Output()
		require.NoError(t, err, "gpg %v", args)
		return out
	}
	gpg("--passphrase", "", "--quick-gen-key", "Ideascube archive <archive@ideascube.invalid>", "ed25519", "sign", "never")
	key := gpg("--armor", "--export-secret-keys", "Ideascube archive")
	require.NoError(t, os.WriteFile(filepath.Join(d.dir, "archive-key.asc"), key, 0o600))
	exec.Command("gpgconf", "--homedir", gnupg, "--kill", "all").Run()
}

// builderName returns the name of a builder by ID.
func (d *deployment) builderName(id int) string {
	for n, i := range d.builders {
		if i == id {
			return n
		}
	}
	return ""
}

// waitBuilds waits until n builds after the build ID after are complete.
func (d *deployment) waitBuilds(what string, after, n int) []build {
	var bs []build
	d.waitFor(what, 25*time.Minute, func() bool {
		bs = d.builds(after)
		return len(bs) >= n
	})
	return bs
}

// lastBuildID returns the highest build ID so far.
func (d *deployment) lastBuildID() int {
	var ans struct {
		Builds []build `json:"builds"`
	}
	d.get("/api/v2/builds", &ans)
	last := 0
	for _, b := range ans.Builds {
		last = max(last, b.BuildID)
	}
	return last
}

// packages returns the Packages index of an architecture, from the
// archive the master serves.
func (d *deployment) packages(arch string) string {
	code, body := d.fetch("/debian/dists/bookworm/main/binary-" + arch + "/Packages")
	require.Equal(d.t, http.StatusOK, code)
	return string(body)
}

// stanza returns the fields of a package's stanza in a Packages index.
func stanza(index, pkg string) map[string]string {
	for _, p := range strings.Split(index, "\n\n") {
		fields := map[string]string{}
		for _, line := range strings.Split(p, "\n") {
			if k, v, ok := strings.Cut(line, ": "); ok && !strings.HasPrefix(line, " ") {
				fields[k] = v
			}
		}
		if fields["Package"] == pkg {
			return fields
		}
	}
	return nil
}

// poolFile downloads kiln-hello's .deb, as an index lists it, into dir.
func (d *deployment) poolFile(index, dir string) string {
	file := stanza(index, "kiln-hello")["Filename"]
	require.NotEmpty(d.t, file, "kiln-hello in the index:\n%s", index)
	code, body := d.fetch("/debian/" + file)
	require.Equal(d.t, http.StatusOK, code, file)
	path := filepath.Join(dir, filepath.Base(file))
	require.NoError(d.t, os.WriteFile(path, body, 0o644))
	return path
}

// TestIdeascube runs the real program and two kiln-worker processes as
// deployed, with Debian's own tools: a signed GitHub create event for a
// tag builds kiln-hello for amd64 (natively, in the schroot chroot, after
// sudo sbuild-update) and for armhf and i386 (cross-built in the amd64
// chroot), checks it with lintian, uploads it with dput and publishes it
// in the master's signed archive, from which apt-get installs it in a
// fresh chroot. A package whose build fails, one with a lintian error and
// a tag that is not a Debian version publish nothing.
func TestIdeascube(t *testing.T) {
	testenv.SkipIfShort(t, "builds, lints and publishes packages with sbuild in a schroot")
	debtest.NeedTools(t, "git", "sbuild", "schroot", "lintian", "dput", "reprepro", "gpg", "sudo", "dpkg-deb", "chroot")
	debtest.Schroot(t, debtest.DefaultSchroot)
	tarball := debtest.Tarball(t)
	d := deploy(t, nil, map[string][]string{"worker-amd64": {"local"}, "worker-armhf": {"remote"}})

	d.writeArchiveKey()
	d.start("-cross", "armhf,i386")
	assert.NotContains(t, d.master.out.String(), "unsigned")

	// A tag is created on GitHub.
	code, text := d.github("create", "gh-secret", createEvent("tag", "1.0", "https://github.com/ideascube/ideascube.git"))
	require.Equal(t, http.StatusOK, code, text)
	builds := d.waitBuilds("the three builds of 1.0", 0, 3)
	ran := map[string]string{}
	for _, b := range builds {
		builder := d.builderName(b.BuilderID)
		arch := strings.TrimSuffix(strings.TrimPrefix(builder, "build-"), "-pkg")
		for name, id := range d.workerID {
			if id == b.WorkerID {
				ran[builder] = name
			}
		}
		steps, names := d.steps(b.BuildID)
		require.NotNil(t, b.Results)
		require.Equal(t, success, *b.Results, "build of %s: %v", builder, steps)
		assert.Equal(t, []string{"version", "git", "sbuild-update", "sbuild", "lintian", "dput", "publish"}, names, builder)
		assert.Equal(t, "tag 1.0", steps["version"].StateString)
		assert.Equal(t, "updated bookworm-amd64-sbuild", steps["sbuild-update"].StateString, "the chroot the build runs in")
		if arch == "amd64" {
			assert.Equal(t, "kiln-hello 1.0 (amd64): successful, 2 .deb", steps["sbuild"].StateString)
		} else {
			assert.Equal(t, "kiln-hello 1.0 ("+arch+", cross-built on amd64): successful, 2 .deb", steps["sbuild"].StateString)
		}
		assert.Equal(t, "lintian: no tags", steps["lintian"].StateString)
		method := map[string]string{"worker-amd64": "local", "worker-armhf": "remote"}[ran[builder]]
		assert.Equal(t, "uploaded kiln-hello_1.0_"+arch+".changes to "+method, steps["dput"].StateString)
		assert.Contains(t, steps["publish"].StateString, "published kiln-hello 1.0")
		assert.Contains(t, steps["publish"].StateString, "in bookworm/main")
	}
	assert.Equal(t, map[string]string{"build-amd64-pkg": "worker-amd64", "build-i386-pkg": "worker-amd64", "build-armhf-pkg": "worker-armhf"}, ran)

	// The archive has the three, signed.
	for _, arch := range []string{"amd64", "armhf", "i386"} {
		p := stanza(d.packages(arch), "kiln-hello")
		assert.Equal(t, "1.0", p["Version"], arch)
		assert.Equal(t, arch, p["Architecture"])
		assert.Equal(t, "pool/main/k/kiln-hello/kiln-hello_1.0_"+arch+".deb", p["Filename"])
	}
	code, inRelease := d.fetch("/debian/dists/bookworm/InRelease")
	require.Equal(t, http.StatusOK, code)
	assert.Contains(t, string(inRelease), "-----BEGIN PGP SIGNED MESSAGE-----")
	code, _ = d.fetch("/debian/conf/distributions")
	assert.Equal(t, http.StatusNotFound, code, "only the published tree is served")

	// apt-get installs the amd64 package from the master in a fresh
	// chroot, where it runs.
	installed := aptInstall(t, d, tarball)
	assert.Equal(t, debtest.Greeting+" 64-bit\n", installed)

	// The cross-built packages are what they say.
	dl := t.TempDir()
	for arch, machine := range map[string]elf.Machine{"armhf": elf.EM_ARM, "i386": elf.EM_386} {
		deb := d.poolFile(d.packages(arch), dl)
		fields, err := exec.Command("dpkg-deb", "-f", deb, "Package", "Version", "Architecture").Output()
		require.NoError(t, err)
		assert.Equal(t, "Package: kiln-hello\nVersion: 1.0\nArchitecture: "+arch+"\n", string(fields))
		root := filepath.Join(dl, arch)
		require.NoError(t, exec.Command("dpkg-deb", "-x", deb, root).Run())
		f, err := elf.Open(filepath.Join(root, "usr", "bin", "kiln-hello"))
		require.NoError(t, err)
		assert.Equal(t, machine, f.Machine, arch)
		assert.Equal(t, elf.ELFCLASS32, f.Class, arch)
		f.Close()
		assert.FileExists(t, filepath.Join(root, "usr", "share", "man", "man1", "kiln-hello.1.gz"))
	}

	// A package whose build fails, and one with a lintian error, forced
	// by the admin: both fail where they should, and publish nothing.
	last := d.lastBuildID()
	assert.Equal(t, http.StatusUnauthorized, d.force("", "", d.builders["build-amd64-pkg"], "1.1"))
	assert.Equal(t, http.StatusUnauthorized, d.force("admin", "wrong", d.builders["build-amd64-pkg"], "1.1"))
	require.Equal(t, http.StatusOK, d.force("admin", "admin pass", d.builders["build-amd64-pkg"], "1.1"))
	require.Equal(t, http.StatusOK, d.force("admin", "admin pass", d.builders["build-amd64-pkg"], "1.2"))
	failed := d.waitBuilds("the builds of 1.1 and 1.2", last, 2)
	for _, b := range failed {
		steps, names := d.steps(b.BuildID)
		require.NotNil(t, b.Results)
		assert.Equal(t, failure, *b.Results)
		switch {
		case steps["version"].StateString == "tag 1.1":
			assert.Equal(t, []string{"version", "git", "sbuild-update", "sbuild"}, names)
			sb := steps["sbuild"].StateString
			assert.Contains(t, sb, "kiln-hello 1.1 (amd64): attempted, failed at stage build: ")
			assert.Contains(t, sb, "override_dh_auto_build] Error 1")
			code, summary := d.fetch(fmt.Sprintf("/api/v2/builds/%d/steps/sbuild/logs/summary/raw", b.BuildID))
			require.Equal(t, http.StatusOK, code)
			assert.Contains(t, string(summary), "Fail-Stage: build\n")
			assert.Contains(t, string(summary), "Last lines of Build:\n")
			assert.Contains(t, string(summary), "  compiling the broken part\n", "the failing command's lines")
			assert.Contains(t, string(summary), "  dpkg-buildpackage: error: debian/rules binary subprocess returned exit status 2\n")
		case steps["version"].StateString == "tag 1.2":
			assert.Equal(t, []string{"version", "git", "sbuild-update", "sbuild", "lintian"}, names)
			assert.Contains(t, steps["lintian"].StateString, "1 error (no-copyright-file)")
			assert.Equal(t, failure, *steps["lintian"].Results)
		default:
			t.Errorf("unexpected build: %v", steps)
		}
	}
	assert.NotContains(t, d.packages("amd64"), "Version: 1.1")
	assert.NotContains(t, d.packages("amd64"), "Version: 1.2")

	// A tag that is not a Debian version stops at the first step.
	last = d.lastBuildID()
	code, text = d.github("create", "gh-secret", createEvent("tag", "v9;rm", "https://github.com/ideascube/ideascube.git"))
	require.Equal(t, http.StatusOK, code, text)
	for _, b := range d.waitBuilds("the builds of v9;rm", last, 3) {
		steps, names := d.steps(b.BuildID)
		assert.Equal(t, failure, *b.Results)
		assert.Equal(t, []string{"version"}, names)
		assert.Equal(t, `tag "v9;rm" is not a Debian version: the upstream version "v9;rm" must start with a digit (failure)`, steps["version"].StateString)
	}

	// A branch created on GitHub gives nothing; a bad signature is refused.
	changes, buildsets := d.total("/api/v2/changes"), d.total("/api/v2/buildsets")
	code, _ = d.github("create", "gh-secret", createEvent("branch", "feature", "https://github.com/ideascube/ideascube.git"))
	assert.Equal(t, http.StatusOK, code)
	code, _ = d.github("create", "wrong-secret", createEvent("tag", "6.6.6", "https://github.com/ideascube/ideascube.git"))
	assert.Equal(t, http.StatusForbidden, code)
	assert.Equal(t, changes, d.total("/api/v2/changes"))
	assert.Equal(t, buildsets, d.total("/api/v2/buildsets"))

	// A backup while the master runs.
	backup := filepath.Join(t.TempDir(), "backup.sqlite")
	out, err := exec.Command(bins.master, "-basedir", d.dir, "-backup", backup).CombinedOutput()
	require.NoError(t, err, "%s", out)
	db, err := sql.Open("sqlite", backup)
	require.NoError(t, err)
	var n int
	require.NoError(t, db.QueryRow(`SELECT COUNT(*) FROM builds WHERE results = 0`).Scan(&n))
	db.Close()
	assert.Equal(t, 3, n, "the backup has the builds")

	// SIGTERM stops the master cleanly.
	require.NoError(t, d.master.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case <-d.master.done:
	case <-time.After(time.Minute):
		t.Fatal("the master did not stop on SIGTERM")
	}
	assert.Equal(t, 0, d.master.cmd.ProcessState.ExitCode(), d.master.out.String())
	for _, secret := range []string{"gh-secret", "admin pass", "PRIVATE KEY"} {
		assert.NotContains(t, d.master.out.String(), secret)
	}
}

// aptInstall installs kiln-hello with apt-get, over HTTP from the master's
// archive, in a fresh chroot unpacked from the buildd tarball, whose only
// source is the archive, signed-by its key; it returns what the installed
// program prints.
func aptInstall(t testing.TB, d *deployment, tarball string) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), "chroot")
	require.NoError(t, os.MkdirAll(root, 0o755))
	out, err := exec.Command("tar", "--zstd", "-xf", tarball, "-C", root).CombinedOutput()
	require.NoError(t, err, "%s", out)
	code, key := d.fetch("/debian/archive-key.gpg")
	require.Equal(t, http.StatusOK, code)
	require.NoError(t, os.MkdirAll(filepath.Join(root, "etc", "apt", "keyrings"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(root, "etc", "apt", "keyrings", "ideascube.gpg"), key, 0o644))
	os.Remove(filepath.Join(root, "etc", "apt", "sources.list"))
	os.RemoveAll(filepath.Join(root, "etc", "apt", "sources.list.d"))
	require.NoError(t, os.MkdirAll(filepath.Join(root, "etc", "apt", "sources.list.d"), 0o755))
	line := "deb [signed-by=/etc/apt/keyrings/ideascube.gpg] " + d.web.base + "/debian bookworm main\n"
	require.NoError(t, os.WriteFile(filepath.Join(root, "etc", "apt", "sources.list"), []byte(line), 0o644))
	run := func(args ...string) string {
		cmd := exec.Command("chroot", append([]string{root}, args...)...)
		cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "DEBIAN_FRONTEND=noninteractive", "LC_ALL=C.UTF-8"}
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "%v: %s", args, out)
		return string(out)
	}
	update := run("apt-get", "update")
	assert.Contains(t, update, d.web.base+"/debian bookworm InRelease")
	assert.NotContains(t, update, "NO_PUBKEY")
	install := run("apt-get", "install", "-y", "kiln-hello")
	assert.Contains(t, install, "Setting up kiln-hello (1.0)")
	return run("kiln-hello")
}

// TestIdeascube_Unshare runs the workers in sbuild's unshare mode, from
// chroot tarballs, with an unsigned archive: a missing tarball fails the
// build naming it and the command that makes it; an armhf build whose
// dput host is not configured fails at dput naming dput's configuration
// files; neither publishes anything.
func TestIdeascube_Unshare(t *testing.T) {
	testenv.SkipIfShort(t, "builds, lints and publishes packages with sbuild in unshare mode")
	debtest.NeedTools(t, "git", "sbuild", "lintian", "dput", "reprepro", "gpg", "mmdebstrap")
	tarball := debtest.Tarball(t)
	d := deploy(t, nil, map[string][]string{"worker-amd64": {"local"}, "worker-armhf": {"local"}})
	tarballs := filepath.Join(d.top, "tarballs")
	require.NoError(t, os.MkdirAll(tarballs, 0o755))
	d.start("-unshare", "-tarballs", tarballs, "-cross", "armhf,i386", "-archive-unsigned")
	assert.Contains(t, d.master.out.String(), "the Debian archive is unsigned")

	link := filepath.Join(tarballs, "bookworm-amd64.tar.zst")
	require.Equal(t, http.StatusOK, d.force("admin", "admin pass", d.builders["build-amd64-pkg"], "1.0"))
	b := d.waitBuilds("the build without a tarball", 0, 1)[0]
	steps, names := d.steps(b.BuildID)
	assert.Equal(t, failure, *b.Results)
	assert.Equal(t, []string{"version", "git", "sbuild"}, names, "no sbuild-update in unshare mode")
	assert.Equal(t, "kiln-hello 1.0 (amd64): failed, failed at stage create-session: chroot "+link+" not found; "+
		"create it with: mmdebstrap --variant=buildd --arch=amd64 bookworm "+link+" (failure)", steps["sbuild"].StateString)

	require.NoError(t, os.Symlink(tarball, link))
	last := d.lastBuildID()
	require.Equal(t, http.StatusOK, d.force("admin", "admin pass", d.builders["build-armhf-pkg"], "1.0"))
	b = d.waitBuilds("the armhf build", last, 1)[0]
	steps, names = d.steps(b.BuildID)
	assert.Equal(t, failure, *b.Results)
	assert.Equal(t, []string{"version", "git", "sbuild", "lintian", "dput"}, names)
	assert.Equal(t, "kiln-hello 1.0 (armhf, cross-built on amd64): successful, 2 .deb", steps["sbuild"].StateString)
	assert.Equal(t, `dput host "remote" is not defined in /etc/dput.cf or ~/.dput.cf (failure)`, steps["dput"].StateString)

	assert.NotContains(t, d.packages("armhf"), "kiln-hello")
	code, _ := d.fetch("/debian/dists/bookworm/InRelease")
	assert.Equal(t, http.StatusNotFound, code, "an unsigned archive has no InRelease")
	code, release := d.fetch("/debian/dists/bookworm/Release")
	assert.Equal(t, http.StatusOK, code)
	assert.Contains(t, string(release), "Codename: bookworm")
}
