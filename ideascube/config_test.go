package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/bcrypt"

	"github.com/kilnci/kiln/ci"
	"github.com/kilnci/kiln/ci/report"
	"github.com/kilnci/kiln/ci/steps"
	"github.com/kilnci/kiln/scheduler"
	"github.com/kilnci/kiln/webui"
)

func testSecrets() secrets {
	return secrets{
		secretAmd64Password: "amd64-pass", secretArmhfPassword: "armhf-pass",
		secretAdminUser: "admin", secretAdminPassword: "admin-pass",
		secretGitHub: "github-secret", secretGitLab: "gitlab-token",
	}
}

// TestConfig checks Ideascube's configuration as data: what the guide's
// master.cfg declared, and the exact commands each builder runs.
func TestConfig(t *testing.T) {
	o := defaultOptions()
	o.BaseDir = t.TempDir()
	cfg, err := config(o, testSecrets())
	require.NoError(t, err)
	_, err = ci.NewMaster(cfg)
	require.NoError(t, err, "the configuration is valid")

	assert.Equal(t, "Ideascube", cfg.Title)
	assert.Equal(t, "https://github.com/ideascube", cfg.TitleURL)
	assert.Equal(t, "http://buildbot.ideascube.org/", cfg.PublicURL)
	assert.Equal(t, filepath.Join(o.BaseDir, "state.sqlite"), cfg.DatabasePath())
	assert.Equal(t, ":8010", cfg.HTTPAddr)
	assert.Equal(t, ":9989", cfg.WorkerAddr)

	require.Len(t, cfg.Workers, 2)
	assert.Equal(t, "worker-amd64", cfg.Workers[0].Name)
	assert.Equal(t, map[string]any{"dput_method": "local"}, cfg.Workers[0].Properties)
	assert.Equal(t, "worker-armhf", cfg.Workers[1].Name)
	assert.Equal(t, map[string]any{"dput_method": "remote"}, cfg.Workers[1].Properties)

	want := map[string][2]string{ // builder: worker, arch
		"build-amd64-pkg": {"worker-amd64", "amd64"},
		"build-armhf-pkg": {"worker-armhf", "armhf"},
		"build-i386-pkg":  {"worker-amd64", "i386"},
	}
	require.Len(t, cfg.Builders, 3)
	for _, b := range cfg.Builders {
		w, ok := want[b.Name]
		require.True(t, ok, b.Name)
		assert.Equal(t, []string{w[0]}, b.Workers, b.Name)
		assert.Equal(t, w[1], b.Properties["arch"], b.Name)
		require.Len(t, b.Steps, 4)
		git := b.Steps[0].(*steps.Git)
		assert.Equal(t, "https://github.com/ideascube/ideascube.git", git.RepoURL)
		assert.Equal(t, steps.Incremental, git.Mode)

		// The commands of a build of tag 0.9.1 on this builder's worker.
		props := ci.Properties{}
		props.SetAll(b.Properties, ci.SourceBuilder)
		for _, wc := range cfg.Workers {
			if wc.Name == w[0] {
				props.SetAll(wc.Properties, ci.SourceWorker)
			}
		}
		props.Set("builddir", "/srv/buildbot/"+w[0]+"/"+b.Name, ci.SourceWorker)
		tag := ci.StaticProps{Properties: props, SourceStamps: []ci.SourceStamp{{Branch: "0.9.1", Revision: "0.9.1"}}}
		ctx := context.Background()
		branch, err := ci.RenderString(ctx, tag, git.Branch)
		require.NoError(t, err)
		assert.Equal(t, "0.9.1", branch, "the tag of the change")
		forced := ci.StaticProps{Properties: props, SourceStamps: []ci.SourceStamp{{}}}
		branch, err = ci.RenderString(ctx, forced, git.Branch)
		require.NoError(t, err)
		assert.Equal(t, "master", branch, "master when forced without a branch")

		argv := func(i int) []string {
			got, err := ci.RenderList(ctx, tag, b.Steps[i].(*steps.ShellCommand).Command)
			require.NoError(t, err)
			return got
		}
		dput := map[string]string{"worker-amd64": "local", "worker-armhf": "remote"}[w[0]]
		assert.Equal(t, []string{"sudo", "sbuild-update", "--update", "--dist-upgrade", "--clean", "--autoclean", "--autoremove", "jessie-" + w[1] + "-sbuild"}, argv(1))
		assert.Equal(t, []string{"sbuild", "--verbose", "--source", "--dist=jessie", "--arch=" + w[1], "--build-dep-resolver=aptitude",
			"--extra-repository=deb http://archive.debian.org/debian jessie-backports main"}, argv(2))
		assert.Equal(t, []string{"dput", dput, "/srv/buildbot/" + w[0] + "/" + b.Name + "/ideascube_0.9.1_" + w[1] + ".changes"}, argv(3))
		for _, s := range b.Steps {
			assert.True(t, s.Options().HaltOnFailure, "%s: %s stops the build when it fails", b.Name, s.Options().Name)
		}
	}

	require.Len(t, cfg.Schedulers, 2)
	force := cfg.Schedulers[0].(*scheduler.Force)
	assert.Equal(t, "force", force.Name)
	assert.ElementsMatch(t, []string{"build-amd64-pkg", "build-armhf-pkg", "build-i386-pkg"}, force.Builders)
	tags := cfg.Schedulers[1].(*scheduler.AnyBranch)
	assert.Equal(t, "tags", tags.Name)
	assert.Equal(t, []string{"new-tag"}, tags.ChangeFilter.Category)
	assert.ElementsMatch(t, force.Builders, tags.Builders)

	dialects := []string{}
	for _, h := range cfg.ChangeHooks {
		dialects = append(dialects, h.Dialect())
	}
	assert.Equal(t, []string{"github", "gitlab"}, dialects)
	assert.Empty(t, cfg.Reporters, "no IRC without a server")

	var web *webui.Server
	for _, s := range cfg.Services {
		if w, ok := s.(*webui.Server); ok {
			web = w
		}
	}
	require.NotNil(t, web)
	assert.Equal(t, webui.Authz{Force: webui.LoggedIn, Stop: webui.LoggedIn}, web.Options.Authz)
	assert.True(t, web.Options.Auth.AllowPlain, "a plain admin password is allowed as such")
}

func TestConfig_Options(t *testing.T) {
	o := defaultOptions()
	o.BaseDir = t.TempDir()
	o.Dist, o.Repo, o.ExtraRepository = "stretch", "/srv/git/ideascube", "deb http://example.org/debian stretch-backports main"
	s := testSecrets()
	s[secretAdminPassword] = "$2a$10$0123456789012345678901uDrAHk3Ue1aPd4YzSxZrD/8SgH1G4vq"
	s[secretIRCServer] = "irc.example.org:6667"
	cfg, err := config(o, s)
	require.NoError(t, err)
	b := cfg.Builders[0]
	props := ci.Properties{}
	props.Set("arch", "amd64", ci.SourceBuilder)
	tag := ci.StaticProps{Properties: props, SourceStamps: []ci.SourceStamp{{Branch: "1.0"}}}
	argv, err := ci.RenderList(context.Background(), tag, b.Steps[2].(*steps.ShellCommand).Command)
	require.NoError(t, err)
	assert.Contains(t, argv, "--dist=stretch")
	assert.Contains(t, argv, "--extra-repository=deb http://example.org/debian stretch-backports main")
	assert.Equal(t, "/srv/git/ideascube", b.Steps[0].(*steps.Git).RepoURL)
	require.Len(t, cfg.Reporters, 1)
	irc := cfg.Reporters[0].(*report.IRC)
	assert.Equal(t, "irc.example.org:6667", irc.Addr)
	assert.Equal(t, "ideascube-ci", irc.Nick)
	assert.Equal(t, []string{"#ideascube"}, irc.Channels)
	for _, s := range cfg.Services {
		if w, ok := s.(*webui.Server); ok {
			assert.False(t, w.Options.Auth.AllowPlain, "a bcrypt hash is checked as one")
		}
	}
}

func TestLoadSecrets(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "secrets.env")
	env := map[string]string{}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }

	_, err := loadSecrets(path, lookup)
	require.Error(t, err)
	for _, k := range requiredSecrets {
		assert.Contains(t, err.Error(), k)
	}

	file := "IDEASCUBE_WORKER_AMD64_PASSWORD=from-file-amd64\nIDEASCUBE_WORKER_ARMHF_PASSWORD=from-file-armhf\n" +
		"IDEASCUBE_ADMIN_USER=admin\nIDEASCUBE_ADMIN_PASSWORD='s3cret pass'\nIDEASCUBE_GITHUB_SECRET=gh-value-123\n"
	require.NoError(t, os.WriteFile(path, []byte(file), 0o600))
	_, err = loadSecrets(path, lookup)
	require.Error(t, err)
	assert.Equal(t, "missing secrets (set them in the environment or in "+path+"): IDEASCUBE_GITLAB_SECRET", err.Error())
	assert.NotContains(t, err.Error(), "gh-value-123")

	env[secretGitLab] = "gl-token"
	env[secretAmd64Password] = "from-env"
	s, err := loadSecrets(path, lookup)
	require.NoError(t, err)
	assert.Equal(t, "from-env", s[secretAmd64Password], "the environment wins")
	assert.Equal(t, "from-file-armhf", s[secretArmhfPassword])
	assert.Equal(t, "s3cret pass", s[secretAdminPassword])
	assert.Equal(t, "gl-token", s[secretGitLab])

	require.NoError(t, os.WriteFile(path, []byte("IDEASCUBE_ADMIN_USER\n"), 0o600))
	_, err = loadSecrets(path, lookup)
	assert.ErrorContains(t, err, "line 1 is not KEY=VALUE")
}

func TestRun_BadStart(t *testing.T) {
	var out strings.Builder
	err := run(context.Background(), []string{}, &out, &out)
	assert.EqualError(t, err, "-basedir is required")
	err = run(context.Background(), []string{"-basedir", t.TempDir(), "extra"}, &out, &out)
	assert.EqualError(t, err, `unexpected argument "extra"`)
	t.Setenv(secretGitHub, "")
	err = run(context.Background(), []string{"-basedir", t.TempDir()}, &out, &out)
	assert.ErrorContains(t, err, "missing secrets")
	assert.ErrorContains(t, err, secretGitHub)
}

func TestHashPassword(t *testing.T) {
	var out strings.Builder
	require.NoError(t, hashPassword(strings.NewReader("s3cret pass\n"), &out))
	h := strings.TrimSpace(out.String())
	assert.True(t, isBcrypt(h))
	assert.NoError(t, bcrypt.CompareHashAndPassword([]byte(h), []byte("s3cret pass")))
	assert.Error(t, hashPassword(strings.NewReader("\n"), &out))
}
