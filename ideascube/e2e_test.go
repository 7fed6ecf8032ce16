//go:build unix

package main

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"database/sql"
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
	"github.com/kilnci/kiln/internal/testenv"
)

// The binaries of the end-to-end test, built once.
var bins struct{ master, worker string }

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "ideascube-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
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
func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	return ln.Addr().String()
}

func git(t *testing.T, dir string, args ...string) {
	t.Helper()
	cmd := exec.Command("git", append([]string{"-c", "user.name=Ideascube", "-c", "user.email=dev@ideascube.invalid"}, args...)...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "git %v: %s", args, out)
}

// stubs writes the programs the builds call, which record their argv (one
// call a line, arguments separated by tabs) in $KILN_STUB_LOG. sbuild
// writes the .changes file into the parent folder, as sbuild does; dput
// fails if it is given a file that does not exist.
func stubs(t *testing.T) string {
	dir := filepath.Join(t.TempDir(), "stubs")
	require.NoError(t, os.MkdirAll(dir, 0o755))
	// The record is one write: builds run at once on a worker, and their
	// stubs append to the same file.
	record := `line=$(basename "$0"); for a in "$@"; do line="$line$(printf '\t%s' "$a")"; done; printf '%s\n' "$line" >> "$KILN_STUB_LOG"` + "\n"
	scripts := map[string]string{
		"sudo":          record + `exec "$@"` + "\n",
		"sbuild-update": record,
		"sbuild": record + `arch=unknown; for a in "$@"; do case "$a" in --arch=*) arch="${a#--arch=}";; esac; done
tag=$(git describe --tags --exact-match 2>/dev/null || echo untagged)
echo "Format: 1.8" > "../ideascube_${tag}_${arch}.changes"
echo "sbuild: built ideascube ${tag} for ${arch}"` + "\n",
		"dput": record + `test -f "$2" || { echo "dput: no $2" >&2; exit 1; }; echo "dput: uploaded $2 with $1"` + "\n",
	}
	for name, body := range scripts {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\n"+body), 0o755))
	}
	return dir
}

// proc is a process of the test, killed when it ends.
type proc struct {
	cmd  *exec.Cmd
	out  *bytes.Buffer
	done chan struct{}
}

func start(t *testing.T, env []string, name string, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(name, args...), out: &bytes.Buffer{}, done: make(chan struct{})}
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	require.NoError(t, p.cmd.Start())
	go func() {
		p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
		if t.Failed() {
			t.Logf("%s:\n%s", filepath.Base(name), p.out.String())
		}
	})
	return p
}

// web is the master's web address, with helpers.
type web struct {
	t    *testing.T
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

func (w web) total(path string) int {
	var ans struct {
		Meta struct {
			Total int `json:"total"`
		} `json:"meta"`
	}
	w.get(path, &ans)
	return ans.Meta.Total
}

// waitFor polls cond.
func (w web) waitFor(what string, cond func() bool) {
	w.t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for !cond() {
		require.True(w.t, time.Now().Before(deadline), "timed out waiting for %s", what)
		time.Sleep(50 * time.Millisecond)
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

// TestIdeascube runs the real program with two kiln-worker processes, as
// deployed: a signed GitHub create event for a tag builds the package for
// the three architectures on the right workers with the right commands.
func TestIdeascube(t *testing.T) {
	testenv.NeedTool(t, "git")
	repo := filepath.Join(t.TempDir(), "ideascube")
	require.NoError(t, os.MkdirAll(repo, 0o755))
	git(t, repo, "init", "-q", "-b", "master")
	require.NoError(t, os.WriteFile(filepath.Join(repo, "setup.py"), []byte("# ideascube\n"), 0o644))
	git(t, repo, "add", ".")
	git(t, repo, "commit", "-qm", "Ideascube")
	git(t, repo, "tag", "-a", "0.9.1", "-m", "Release 0.9.1")

	base := t.TempDir()
	secrets := "IDEASCUBE_WORKER_AMD64_PASSWORD=amd64 pass\nIDEASCUBE_WORKER_ARMHF_PASSWORD=armhf pass\n" +
		"IDEASCUBE_ADMIN_USER=admin\nIDEASCUBE_ADMIN_PASSWORD=admin pass\nIDEASCUBE_GITHUB_SECRET=gh-secret\nIDEASCUBE_GITLAB_SECRET=gl-token\n"
	require.NoError(t, os.WriteFile(filepath.Join(base, "secrets.env"), []byte(secrets), 0o600))
	httpAddr, workerAddr := freeAddr(t), freeAddr(t)
	master := start(t, nil, bins.master, "-basedir", base, "-http", httpAddr, "-workers", workerAddr, "-url", "http://"+httpAddr+"/", "-repo", repo)
	w := web{t: t, base: "http://" + httpAddr}
	w.waitFor("the master to serve", func() bool {
		resp, err := http.Get(w.base + "/api/v2/builders")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil && resp.StatusCode == http.StatusOK
	})

	stubDir := stubs(t)
	logs := map[string]string{}
	for _, name := range []string{"worker-amd64", "worker-armhf"} {
		dir := filepath.Join(t.TempDir(), name)
		pass := map[string]string{"worker-amd64": "amd64 pass", "worker-armhf": "armhf pass"}[name]
		out, err := exec.Command(bins.worker, "create-worker", dir, workerAddr, name, pass).CombinedOutput()
		require.NoError(t, err, "%s", out)
		logs[name] = filepath.Join(t.TempDir(), name+".log")
		start(t, []string{"PATH=" + stubDir + ":" + os.Getenv("PATH"), "KILN_STUB_LOG=" + logs[name]}, bins.worker, "start", dir)
	}
	workerIDs := map[string]int{}
	w.waitFor("both workers to attach", func() bool {
		var ans struct {
			Workers []struct {
				WorkerID    int    `json:"workerid"`
				Name        string `json:"name"`
				ConnectedTo []any  `json:"connected_to"`
			} `json:"workers"`
		}
		w.get("/api/v2/workers", &ans)
		n := 0
		for _, wk := range ans.Workers {
			if len(wk.ConnectedTo) > 0 {
				workerIDs[wk.Name] = wk.WorkerID
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
	w.get("/api/v2/builders", &builders)
	builderNames := map[int]string{}
	for _, b := range builders.Builders {
		builderNames[b.BuilderID] = b.Name
	}

	// A tag is created on GitHub.
	code, text := w.github("create", "gh-secret", createEvent("tag", "0.9.1", "https://github.com/ideascube/ideascube.git"))
	require.Equal(t, http.StatusOK, code, text)
	var builds struct {
		Builds []build `json:"builds"`
	}
	w.waitFor("three finished builds", func() bool {
		w.get("/api/v2/builds?complete=true", &builds)
		return len(builds.Builds) == 3
	})
	ran := map[string]string{}
	for _, b := range builds.Builds {
		require.NotNil(t, b.Results)
		assert.Equal(t, 0, *b.Results, "build %d of %s", b.BuildID, builderNames[b.BuilderID])
		for name, id := range workerIDs {
			if id == b.WorkerID {
				ran[builderNames[b.BuilderID]] = name
			}
		}
	}
	assert.Equal(t, map[string]string{"build-amd64-pkg": "worker-amd64", "build-i386-pkg": "worker-amd64", "build-armhf-pkg": "worker-armhf"}, ran)

	// What each worker ran.
	for worker, archs := range map[string][]string{"worker-amd64": {"amd64", "i386"}, "worker-armhf": {"armhf"}} {
		b, err := os.ReadFile(logs[worker])
		require.NoError(t, err)
		calls := string(b)
		method := map[string]string{"worker-amd64": "local", "worker-armhf": "remote"}[worker]
		for _, arch := range archs {
			builder := "build-" + arch + "-pkg"
			assert.Contains(t, calls, "sudo\tsbuild-update\t--update\t--dist-upgrade\t--clean\t--autoclean\t--autoremove\tjessie-"+arch+"-sbuild\n")
			assert.Contains(t, calls, "sbuild-update\t--update\t--dist-upgrade\t--clean\t--autoclean\t--autoremove\tjessie-"+arch+"-sbuild\n")
			assert.Contains(t, calls, "sbuild\t--verbose\t--source\t--dist=jessie\t--arch="+arch+"\t--build-dep-resolver=aptitude\t--extra-repository=deb http://archive.debian.org/debian jessie-backports main\n")
			assert.Regexp(t, `dput\t`+method+`\t/\S+/`+worker+`/`+builder+`/ideascube_0\.9\.1_`+arch+`\.changes\n`, calls)
		}
		assert.Equal(t, 4*len(archs), strings.Count(calls, "\n"), calls)
	}

	// A branch created on GitHub gives nothing; a bad signature is refused.
	changes, buildsets := w.total("/api/v2/changes"), w.total("/api/v2/buildsets")
	code, _ = w.github("create", "gh-secret", createEvent("branch", "feature", "https://github.com/ideascube/ideascube.git"))
	assert.Equal(t, http.StatusOK, code)
	code, _ = w.github("create", "wrong-secret", createEvent("tag", "6.6.6", "https://github.com/ideascube/ideascube.git"))
	assert.Equal(t, http.StatusForbidden, code)
	assert.Equal(t, changes, w.total("/api/v2/changes"))
	assert.Equal(t, buildsets, w.total("/api/v2/buildsets"))

	// Forcing needs the admin's login.
	force := func(user, pass string) int {
		body := `{"jsonrpc": "2.0", "method": "force", "params": {"builderid": ` + fmt.Sprint(builderIDOf(builderNames, "build-armhf-pkg")) + `, "branch": "0.9.1", "reason": "rebuild"}, "id": 1}`
		req, _ := http.NewRequest(http.MethodPost, w.base+"/api/v2/forceschedulers/force", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		if user != "" {
			req.SetBasicAuth(user, pass)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}
	assert.Equal(t, http.StatusUnauthorized, force("", ""))
	assert.Equal(t, http.StatusUnauthorized, force("admin", "wrong"))
	assert.Equal(t, 3, w.total("/api/v2/builds"))
	assert.Equal(t, http.StatusOK, force("admin", "admin pass"))
	w.waitFor("the forced build", func() bool {
		w.get("/api/v2/builds?complete=true", &builds)
		return len(builds.Builds) == 4
	})
	for _, b := range builds.Builds {
		assert.Equal(t, 0, *b.Results)
	}

	// A backup while the master runs.
	backup := filepath.Join(t.TempDir(), "backup.sqlite")
	out, err := exec.Command(bins.master, "-basedir", base, "-backup", backup).CombinedOutput()
	require.NoError(t, err, "%s", out)
	db, err := sql.Open("sqlite", backup)
	require.NoError(t, err)
	var n int
	require.NoError(t, db.QueryRow(`SELECT COUNT(*) FROM builds WHERE results = 0`).Scan(&n))
	db.Close()
	assert.Equal(t, 4, n, "the backup has the builds")

	// SIGTERM stops the master cleanly.
	require.NoError(t, master.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case <-master.done:
	case <-time.After(time.Minute):
		t.Fatal("the master did not stop on SIGTERM")
	}
	assert.Equal(t, 0, master.cmd.ProcessState.ExitCode(), master.out.String())
	assert.NotContains(t, master.out.String(), "gh-secret")
	assert.NotContains(t, master.out.String(), "admin pass")
}

func builderIDOf(names map[int]string, name string) int {
	for id, n := range names {
		if n == name {
			return id
		}
	}
	return 0
}
