package steps_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kilnci/kiln/ci"
	"github.com/kilnci/kiln/ci/citest"
	"github.com/kilnci/kiln/ci/steps"
	"github.com/kilnci/kiln/internal/testenv"
)

// repo is a git repository made for a test.
type repo struct {
	t   *testing.T
	dir string
}

func newRepo(t *testing.T) *repo {
	t.Helper()
	testenv.NeedTool(t, "git")
	r := &repo{t: t, dir: filepath.Join(t.TempDir(), "origin")}
	require.NoError(t, os.MkdirAll(r.dir, 0o755))
	r.git("init", "--quiet", "--initial-branch=main")
	r.write(".gitignore", "*.o\n")
	r.commit("first", "a.txt", "one\n")
	return r
}

func (r *repo) git(args ...string) string {
	r.t.Helper()
	cmd := exec.Command("git", append([]string{"-c", "user.name=T", "-c", "user.email=t@example.invalid"}, args...)...)
	cmd.Dir = r.dir
	out, err := cmd.CombinedOutput()
	require.NoError(r.t, err, "git %v: %s", args, out)
	return strings.TrimSpace(string(out))
}

func (r *repo) write(name, content string) {
	r.t.Helper()
	require.NoError(r.t, os.WriteFile(filepath.Join(r.dir, name), []byte(content), 0o644))
}

// commit writes a file, commits it and returns the commit's hash.
func (r *repo) commit(msg, name, content string) string {
	r.t.Helper()
	r.write(name, content)
	r.git("add", "-A")
	r.git("commit", "--quiet", "-m", msg)
	return r.git("rev-parse", "HEAD")
}

func gitMaster(t *testing.T, g *steps.Git) *citest.Master {
	g.StepOptions.Name = "git"
	return start(t, g, &steps.ShellCommand{StepOptions: opts("ls"), Command: []string{"sh", "-c", "ls -A | sort | tr '\\n' ' '"}, Workdir: g.Workdir})
}

func TestGit(t *testing.T) {
	t.Parallel()
	t.Run("IncrementalCloneThenUpdate", func(t *testing.T) {
		t.Parallel()
		r := newRepo(t)
		m := gitMaster(t, &steps.Git{RepoURL: r.dir})
		b := m.Build(t, citest.Request{Builder: "b", SourceStamp: ci.SourceStamp{Branch: "main"}})
		require.Equal(t, ci.Success, b.Results(), b.LogLines("git", "stdio"))
		assert.Equal(t, r.git("rev-parse", "HEAD"), b.Property("got_revision"))
		assert.Equal(t, ".git .gitignore a.txt ", strings.TrimSuffix(b.Log("ls", "stdio"), "\n"))
		assert.Equal(t, "Git", b.Record.Properties["got_revision"].Source)

		// Files made by a build stay with Incremental; the new commit arrives.
		require.NoError(t, os.WriteFile(filepath.Join(workdir(m), "untracked"), nil, 0o644))
		second := r.commit("second", "b.txt", "two\n")
		b = m.Build(t, citest.Request{Builder: "b", SourceStamp: ci.SourceStamp{Branch: "main"}})
		require.Equal(t, ci.Success, b.Results(), b.LogLines("git", "stdio"))
		assert.Equal(t, second, b.Property("got_revision"))
		assert.Equal(t, ".git .gitignore a.txt b.txt untracked ", strings.TrimSuffix(b.Log("ls", "stdio"), "\n"))
		assert.Equal(t, "update "+second[:12], b.Step("git").StateString)
		branch, err := exec.Command("git", "-C", workdir(m), "rev-parse", "--abbrev-ref", "HEAD").Output()
		require.NoError(t, err)
		assert.Equal(t, "main\n", string(branch), "the local branch is named as the source's")
	})
	t.Run("Revision", func(t *testing.T) {
		t.Parallel()
		r := newRepo(t)
		first := r.git("rev-parse", "HEAD")
		r.commit("second", "b.txt", "two\n")
		m := gitMaster(t, &steps.Git{RepoURL: r.dir})
		b := m.Build(t, citest.Request{Builder: "b", SourceStamp: ci.SourceStamp{Branch: "main", Revision: first}})
		require.Equal(t, ci.Success, b.Results(), b.LogLines("git", "stdio"))
		assert.Equal(t, first, b.Property("got_revision"))
		assert.Equal(t, ".git .gitignore a.txt ", strings.TrimSuffix(b.Log("ls", "stdio"), "\n"))
		// AlwaysUseLatest ignores the revision.
		m2 := gitMaster(t, &steps.Git{RepoURL: r.dir, AlwaysUseLatest: true})
		b = m2.Build(t, citest.Request{Builder: "b", SourceStamp: ci.SourceStamp{Branch: "main", Revision: first}})
		assert.Equal(t, r.git("rev-parse", "HEAD"), b.Property("got_revision"))
	})
	t.Run("TagAsBranch", func(t *testing.T) {
		t.Parallel()
		// Ideascube's builds: the change of a new tag names the tag as
		// branch and revision.
		r := newRepo(t)
		tagged := r.commit("release", "v.txt", "0.9.1\n")
		r.git("tag", "-a", "0.9.1", "-m", "release 0.9.1")
		r.commit("after", "c.txt", "later\n")
		m := gitMaster(t, &steps.Git{RepoURL: r.dir, Mode: steps.Full, Method: steps.Clobber})
		b := m.Build(t, citest.Request{Builder: "b", SourceStamp: ci.SourceStamp{Branch: "0.9.1", Revision: "0.9.1"}})
		require.Equal(t, ci.Success, b.Results(), b.LogLines("git", "stdio"))
		assert.Equal(t, tagged, b.Property("got_revision"))
		assert.Equal(t, ".git .gitignore a.txt v.txt ", strings.TrimSuffix(b.Log("ls", "stdio"), "\n"))
	})
	t.Run("FullMethods", func(t *testing.T) {
		t.Parallel()
		for _, tt := range []struct {
			method steps.GitMethod
			want   string
		}{
			{steps.Fresh, ".git .gitignore a.txt "},
			{steps.Clean, ".git .gitignore a.txt ignored.o "},
			{steps.Clobber, ".git .gitignore a.txt "},
			{steps.Copy, ".git .gitignore a.txt "},
		} {
			t.Run(string(tt.method), func(t *testing.T) {
				r := newRepo(t)
				m := gitMaster(t, &steps.Git{RepoURL: r.dir, Mode: steps.Full, Method: tt.method})
				b := m.Build(t, citest.Request{Builder: "b"})
				require.Equal(t, ci.Success, b.Results(), b.LogLines("git", "stdio"))
				for _, f := range []string{"untracked", "ignored.o"} {
					require.NoError(t, os.WriteFile(filepath.Join(workdir(m), f), nil, 0o644))
				}
				require.NoError(t, os.WriteFile(filepath.Join(workdir(m), "a.txt"), []byte("changed"), 0o644))
				b = m.Build(t, citest.Request{Builder: "b"})
				require.Equal(t, ci.Success, b.Results(), b.LogLines("git", "stdio"))
				assert.Equal(t, tt.want, strings.TrimSuffix(b.Log("ls", "stdio"), "\n"))
				a, err := os.ReadFile(filepath.Join(workdir(m), "a.txt"))
				require.NoError(t, err)
				assert.Equal(t, "one\n", string(a), "local changes are reset")
				if tt.method == steps.Copy {
					assert.DirExists(t, filepath.Join(m.Dir, "workers", "w", "b", "source", ".git"))
				}
			})
		}
	})
	t.Run("NotACheckout", func(t *testing.T) {
		t.Parallel()
		r := newRepo(t)
		m := gitMaster(t, &steps.Git{RepoURL: r.dir})
		require.NoError(t, os.MkdirAll(workdir(m), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(workdir(m), "stray"), nil, 0o644))
		b := m.Build(t, citest.Request{Builder: "b"})
		require.Equal(t, ci.Success, b.Results(), b.LogLines("git", "stdio"))
		assert.Equal(t, ".git .gitignore a.txt ", strings.TrimSuffix(b.Log("ls", "stdio"), "\n"), "a folder that is not a checkout is clobbered")
	})
	t.Run("Shallow", func(t *testing.T) {
		t.Parallel()
		r := newRepo(t)
		r.commit("second", "b.txt", "two\n")
		r.commit("third", "c.txt", "three\n")
		m := start(t,
			&steps.Git{StepOptions: opts("git"), RepoURL: "file://" + r.dir, Shallow: true},
			&steps.ShellCommand{StepOptions: opts("count"), Command: []string{"git", "rev-list", "--count", "HEAD"}},
		)
		b := m.Build(t, citest.Request{Builder: "b", SourceStamp: ci.SourceStamp{Branch: "main"}})
		require.Equal(t, ci.Success, b.Results(), b.LogLines("git", "stdio"))
		assert.Equal(t, "1\n", b.Log("count", "stdio"))
	})
	t.Run("Codebase", func(t *testing.T) {
		t.Parallel()
		r := newRepo(t)
		m := start(t, &steps.Git{StepOptions: opts("git"), RepoURL: r.dir, Codebase: "app"})
		b := m.Build(t, citest.Request{Builder: "b", SourceStamp: ci.SourceStamp{Codebase: "app", Branch: "main"}})
		require.Equal(t, ci.Success, b.Results(), b.LogLines("git", "stdio"))
		assert.Equal(t, map[string]any{"app": r.git("rev-parse", "HEAD")}, b.Property("got_revision"))
	})
	t.Run("HostileBranchRefused", func(t *testing.T) {
		t.Parallel()
		r := newRepo(t)
		m := gitMaster(t, &steps.Git{RepoURL: r.dir})
		for _, branch := range []string{"--upload-pack=touch /tmp/kiln-pwned", "a b", "x..y"} {
			b := m.Build(t, citest.Request{Builder: "b", SourceStamp: ci.SourceStamp{Branch: branch}})
			assert.Equal(t, ci.Failure, b.Results(), branch)
			assert.Equal(t, map[string]ci.Result{"git": ci.Failure}, b.StepResults(), "the failed checkout halts the build")
			assert.Contains(t, b.Header("git", "stdio"), "refusing branch")
		}
		assert.NoFileExists(t, "/tmp/kiln-pwned")
	})
	t.Run("MissingRepository", func(t *testing.T) {
		t.Parallel()
		testenv.NeedTool(t, "git")
		m := gitMaster(t, &steps.Git{RepoURL: filepath.Join(t.TempDir(), "nope")})
		b := m.Build(t, citest.Request{Builder: "b"})
		assert.Equal(t, ci.Failure, b.Results())
		assert.Equal(t, "update failed (failure)", b.Step("git").StateString)
		assert.Contains(t, b.Log("git", "stdio"), "nope")
	})
}
