package main

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/bcrypt"

	"github.com/kilnci/kiln/ci"
	"github.com/kilnci/kiln/ci/metrics"
	"github.com/kilnci/kiln/ci/report"
	"github.com/kilnci/kiln/ci/steps"
	"github.com/kilnci/kiln/ci/steps/debian"
	"github.com/kilnci/kiln/scheduler"
	"github.com/kilnci/kiln/webui"
	"github.com/kilnci/kiln/worker/remote"
)

func testSecrets() secrets {
	return secrets{
		workerSecret("worker-amd64"): "amd64-pass", workerSecret("worker-armhf"): "armhf-pass",
		secretAdminUser: "admin", secretAdminPassword: "admin-pass",
		secretGitHub: "github-secret", secretGitLab: "gitlab-token",
		secretArchiveKey: testKey,
	}
}

// testKey has the shape of an archive key; only the master's start reads
// it as a key.
const testKey = "-----BEGIN PGP PRIVATE KEY BLOCK-----\n\nnot a real key\n-----END PGP PRIVATE KEY BLOCK-----\n"

// archiveOf returns the archive among the master's services.
func archiveOf(t *testing.T, cfg ci.MasterConfig) *debian.Archive {
	t.Helper()
	for _, s := range cfg.Services {
		if a, ok := s.(*debian.Archive); ok {
			return a
		}
	}
	t.Fatal("no archive among the services")
	return nil
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
	assert.Equal(t, "https://buildbot.ideascube.org/", cfg.PublicURL)
	assert.Equal(t, filepath.Join(o.BaseDir, "state.sqlite"), cfg.DatabasePath())
	for _, s := range cfg.Services {
		switch s := s.(type) {
		case *webui.Server:
			assert.Equal(t, "127.0.0.1:8010", s.ListenAddr(&cfg), "behind nginx, the web port is the loopback's")
		case *remote.Listener:
			assert.Equal(t, ":9989", s.Addr)
		}
	}
	// -http and -workers reach the services.
	o.HTTPAddr, o.WorkerAddr = ":8080", "127.0.0.1:9000"
	cfg2, err := config(o, testSecrets())
	require.NoError(t, err)
	addrs := map[string]bool{}
	for _, s := range cfg2.Services {
		switch s := s.(type) {
		case *webui.Server:
			addrs[s.ListenAddr(&cfg2)] = true
		case *remote.Listener:
			addrs[s.Addr] = true
		}
	}
	assert.Equal(t, map[string]bool{":8080": true, "127.0.0.1:9000": true}, addrs)

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
		require.Len(t, b.Steps, 7)
		for _, s := range b.Steps {
			assert.True(t, s.Options().HaltOnFailure, "%s: %s stops the build when it fails", b.Name, s.Options().Name)
		}
		check := b.Steps[0].(*debian.CheckVersion)
		assert.Equal(t, "tag", check.What)
		require.NotNil(t, check.RunIf, "master is not checked")
		git := b.Steps[1].(*steps.Git)
		assert.Equal(t, "https://github.com/ideascube/ideascube.git", git.RepoURL)
		assert.Equal(t, steps.Incremental, git.Mode)

		// What a build of tag 0.9.1 on this builder's worker renders.
		props := ci.Properties{}
		props.SetAll(b.Properties, ci.SourceBuilder)
		for _, wc := range cfg.Workers {
			if wc.Name == w[0] {
				props.SetAll(wc.Properties, ci.SourceWorker)
			}
		}
		tag := ci.StaticProps{Properties: props, SourceStamps: []ci.SourceStamp{{Branch: "0.9.1", Revision: "0.9.1"}}}
		ctx := context.Background()
		branch, err := ci.RenderString(ctx, tag, git.Branch)
		require.NoError(t, err)
		assert.Equal(t, "0.9.1", branch, "the tag of the change")
		version, err := ci.RenderString(ctx, tag, check.Version)
		require.NoError(t, err)
		assert.Equal(t, "0.9.1", version, "the tag is checked")
		forced := ci.StaticProps{Properties: props, SourceStamps: []ci.SourceStamp{{}}}
		branch, err = ci.RenderString(ctx, forced, git.Branch)
		require.NoError(t, err)
		assert.Equal(t, "master", branch, "master when forced without a branch")

		update := b.Steps[2].(*debian.SbuildUpdate)
		assert.Equal(t, "jessie-"+w[1]+"-sbuild", update.Chroot)
		assert.Equal(t, true, update.Sudo)
		sb := b.Steps[3].(*debian.Sbuild)
		assert.Equal(t, "jessie", sb.Distribution)
		assert.Equal(t, w[1], sb.Arch, "a native build")
		assert.Nil(t, sb.HostArch)
		assert.Nil(t, sb.BuildArch)
		assert.Equal(t, "jessie-"+w[1]+"-sbuild", sb.Chroot)
		assert.Nil(t, sb.ChrootMode, "schroot, sbuild's default")
		assert.Equal(t, "aptitude", sb.BuildDepResolver)
		assert.Equal(t, []any{"deb http://archive.debian.org/debian jessie-backports main"}, sb.ExtraRepositories)
		assert.Equal(t, w[1] == "amd64", sb.Source, "the source package is built once, on amd64")
		assert.Equal(t, w[1] == "amd64", sb.ArchAll)
		assert.Equal(t, false, sb.CleanSource)
		assert.IsType(t, &debian.Lintian{}, b.Steps[4])
		dput := b.Steps[5].(*debian.Dput)
		host, err := ci.RenderString(ctx, tag, dput.Host)
		require.NoError(t, err)
		assert.Equal(t, map[string]string{"worker-amd64": "local", "worker-armhf": "remote"}[w[0]], host)
		publish := b.Steps[6].(*debian.Publish)
		assert.Equal(t, "jessie", publish.Distribution)
		assert.Same(t, archiveOf(t, cfg), publish.Archive)
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
	assert.Contains(t, web.Mounts, "/debian/", "the archive is served")
	assert.NotContains(t, web.Mounts, "/metrics", "the web port is public")
	for _, s := range cfg.Services {
		if c, ok := s.(*metrics.Collector); ok {
			assert.Equal(t, "127.0.0.1:9101", c.Addr, "Prometheus reads the metrics on the loopback interface")
		}
	}

	archive := archiveOf(t, cfg)
	assert.Equal(t, "debian", archive.Folder)
	require.Len(t, archive.Distributions, 1)
	assert.Equal(t, "jessie", archive.Distributions[0].Codename)
	assert.ElementsMatch(t, []string{"amd64", "armhf", "i386", "source"}, archive.Distributions[0].Architectures)
	assert.Equal(t, testKey, archive.SigningKey)
	assert.False(t, archive.Unsigned)
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
	sb := b.Steps[3].(*debian.Sbuild)
	assert.Equal(t, "stretch", sb.Distribution)
	assert.Equal(t, []any{"deb http://example.org/debian stretch-backports main"}, sb.ExtraRepositories)
	assert.Equal(t, "/srv/git/ideascube", b.Steps[1].(*steps.Git).RepoURL)
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

// TestConfig_Cross: -cross builds armhf and i386 in the amd64 chroot;
// -unshare uses chroot tarballs and has no sbuild-update step.
func TestConfig_Cross(t *testing.T) {
	o := defaultOptions()
	o.BaseDir = t.TempDir()
	o.Dist, o.Cross, o.Unshare, o.Tarballs, o.ExtraRepository = "bookworm", []string{"armhf", "i386"}, true, "/var/cache/kiln", ""
	o.ArchiveUnsigned = true
	s := testSecrets()
	delete(s, secretArchiveKey)
	cfg, err := config(o, s)
	require.NoError(t, err)
	_, err = ci.NewMaster(cfg)
	require.NoError(t, err)
	for _, b := range cfg.Builders {
		arch := b.Properties["arch"].(string)
		require.Len(t, b.Steps, 6, "no sbuild-update in unshare mode")
		sb := b.Steps[2].(*debian.Sbuild)
		if arch == "amd64" {
			assert.Equal(t, "amd64", sb.Arch)
			assert.Nil(t, sb.HostArch)
		} else {
			assert.Nil(t, sb.Arch, b.Name)
			assert.Equal(t, "amd64", sb.BuildArch, b.Name)
			assert.Equal(t, arch, sb.HostArch, b.Name)
		}
		assert.Equal(t, debian.ModeUnshare, sb.ChrootMode)
		assert.Equal(t, "/var/cache/kiln/bookworm-amd64.tar.zst", sb.Chroot)
		assert.Nil(t, sb.ExtraRepositories)
	}
	assert.True(t, archiveOf(t, cfg).Unsigned)
}

// TestConfig_CrossSchroot: the builders that share a worker's schroot
// chroot share its lock: an upgrade takes it whole, so that it never runs
// beside another upgrade or a build from that chroot (two concurrent
// sbuild-update runs fail on debconf's lock); builds take one place each.
func TestConfig_CrossSchroot(t *testing.T) {
	o := defaultOptions()
	o.BaseDir = t.TempDir()
	o.Dist, o.Cross = "bookworm", []string{"armhf", "i386"}
	cfg, err := config(o, testSecrets())
	require.NoError(t, err)
	_, err = ci.NewMaster(cfg)
	require.NoError(t, err)
	var lock *ci.Lock
	for _, b := range cfg.Builders {
		update := b.Steps[2].(*debian.SbuildUpdate)
		sb := b.Steps[3].(*debian.Sbuild)
		assert.Equal(t, "bookworm-amd64-sbuild", update.Chroot, b.Name)
		assert.Equal(t, "bookworm-amd64-sbuild", sb.Chroot, b.Name)
		require.Len(t, update.Locks, 1, b.Name)
		require.Len(t, sb.Locks, 1, b.Name)
		assert.True(t, update.Locks[0].Exclusive, b.Name)
		assert.False(t, sb.Locks[0].Exclusive, b.Name)
		assert.Same(t, update.Locks[0].Lock, sb.Locks[0].Lock, b.Name)
		if lock == nil {
			lock = update.Locks[0].Lock
		}
		assert.Same(t, lock, update.Locks[0].Lock, "one lock for one chroot: %s", b.Name)
	}
	assert.True(t, lock.PerWorker, "a chroot is a worker's")
	assert.Equal(t, "chroot bookworm-amd64-sbuild", lock.Name)
	assert.Greater(t, lock.MaxCount, 1, "builds from one chroot run side by side")
}

func TestLoadArchiveKey(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "archive-key.asc")
	_, err := loadArchiveKey(path)
	assert.ErrorContains(t, err, "the archive's signing key "+path+" is missing: make one with gpg")
	key := "-----BEGIN PGP PRIVATE KEY BLOCK-----\n\nsecret material\n-----END PGP PRIVATE KEY BLOCK-----\n"
	require.NoError(t, os.WriteFile(path, []byte(key), 0o644))
	_, err = loadArchiveKey(path)
	assert.EqualError(t, err, "the archive's signing key "+path+" may be read by others (mode 0644): chmod 600 it")
	require.NoError(t, os.Chmod(path, 0o600))
	got, err := loadArchiveKey(path)
	require.NoError(t, err)
	assert.Equal(t, key, got)
	require.NoError(t, os.WriteFile(path, []byte("secret material"), 0o600))
	_, err = loadArchiveKey(path)
	assert.ErrorContains(t, err, "is not an ASCII-armoured OpenPGP secret key")
	assert.NotContains(t, err.Error(), "secret material")
}

func TestLoadSecrets(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "secrets.env")
	env := map[string]string{}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }

	_, err := loadSecrets(path, lookup)
	require.Error(t, err)
	for _, k := range requiredSecrets() {
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
	env[workerSecret("worker-amd64")] = "from-env"
	s, err := loadSecrets(path, lookup)
	require.NoError(t, err)
	assert.Equal(t, "from-env", s[workerSecret("worker-amd64")], "the environment wins")
	assert.Equal(t, "from-file-armhf", s[workerSecret("worker-armhf")])
	assert.Equal(t, "s3cret pass", s[secretAdminPassword])
	assert.Equal(t, "gl-token", s[secretGitLab])

	require.NoError(t, os.WriteFile(path, []byte("IDEASCUBE_ADMIN_USER\n"), 0o600))
	_, err = loadSecrets(path, lookup)
	assert.ErrorContains(t, err, "line 1 is not KEY=VALUE")

	// A file others may read is refused, naming the fix.
	require.NoError(t, os.WriteFile(path, []byte(file), 0o600))
	require.NoError(t, os.Chmod(path, 0o644))
	_, err = loadSecrets(path, lookup)
	assert.EqualError(t, err, path+" may be read by others (mode 0644): it holds passwords; chmod 600 "+path)
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
	err = run(context.Background(), []string{"-basedir", t.TempDir(), "-cross", "armhf,sparc"}, &out, &out)
	assert.EqualError(t, err, `-cross: "sparc" is not one of the builders' architectures (amd64, armhf, i386)`)

	// With every secret but the archive's key, the start stops naming it.
	base := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(base, "secrets.env"), []byte("IDEASCUBE_WORKER_AMD64_PASSWORD=a\n"+
		"IDEASCUBE_WORKER_ARMHF_PASSWORD=b\nIDEASCUBE_ADMIN_USER=admin\nIDEASCUBE_ADMIN_PASSWORD=pw\n"+
		"IDEASCUBE_GITHUB_SECRET=gh\nIDEASCUBE_GITLAB_SECRET=gl\n"), 0o600))
	err = run(context.Background(), []string{"-basedir", base}, &out, &out)
	assert.ErrorContains(t, err, "the archive's signing key "+filepath.Join(base, "archive-key.asc")+" is missing")
}

func TestHashPassword(t *testing.T) {
	var out strings.Builder
	require.NoError(t, hashPassword(strings.NewReader("s3cret pass\n"), &out))
	h := strings.TrimSpace(out.String())
	assert.True(t, isBcrypt(h))
	assert.NoError(t, bcrypt.CompareHashAndPassword([]byte(h), []byte("s3cret pass")))
	assert.Error(t, hashPassword(strings.NewReader("\n"), &out))

	// One line is read, and nothing after it: "a", not "a\nb" nor "ab".
	out.Reset()
	in := strings.NewReader("a\nb\n")
	require.NoError(t, hashPassword(in, &out))
	h = strings.TrimSpace(out.String())
	assert.NoError(t, bcrypt.CompareHashAndPassword([]byte(h), []byte("a")))
	for _, other := range []string{"a\nb", "a\nb\n", "ab", "b", "a\n"} {
		assert.Error(t, bcrypt.CompareHashAndPassword([]byte(h), []byte(other)), "the hash is of %q", other)
	}
	rest, _ := io.ReadAll(in)
	assert.Equal(t, "b\n", string(rest), "the next line is left unread")
}

// TestConfig_AddWorker: a worker machine is one line of the workers
// table; its password is a secret named after it.
func TestConfig_AddWorker(t *testing.T) {
	saved := workers
	t.Cleanup(func() { workers = saved })
	workers = append(append(workers[:0:0], workers...), struct{ name, dputMethod string }{"worker-arm64", "remote"})
	assert.Equal(t, "IDEASCUBE_WORKER_ARM64_PASSWORD", workerSecret("worker-arm64"))
	assert.Contains(t, requiredSecrets(), "IDEASCUBE_WORKER_ARM64_PASSWORD")
	s := testSecrets()
	s[workerSecret("worker-arm64")] = "arm64-pass"
	o := defaultOptions()
	o.BaseDir = t.TempDir()
	cfg, err := config(o, s)
	require.NoError(t, err)
	require.Len(t, cfg.Workers, 3)
	assert.Equal(t, ci.WorkerConfig{Name: "worker-arm64", Password: "arm64-pass", Properties: map[string]any{"dput_method": "remote"}}, cfg.Workers[2])
}

func TestConfig_DatabaseURL(t *testing.T) {
	o := defaultOptions()
	o.BaseDir = t.TempDir()
	s := testSecrets()
	s[secretDatabaseURL] = "postgres://kiln:db-s3cret@db.example.org/ideascube"
	cfg, err := config(o, s)
	require.NoError(t, err)
	assert.Equal(t, s[secretDatabaseURL], cfg.Database)
	driver, _ := ci.DatabaseDriver(cfg.Database)
	assert.Equal(t, "postgres", driver)
	assert.NotContains(t, cfg.DatabaseName(), "db-s3cret")

	s[secretDatabaseURL] = "mysql://kiln:db-s3cret@db/ideascube"
	_, err = config(o, s)
	require.Error(t, err)
	assert.NotContains(t, err.Error(), "db-s3cret")

	// It is read from secrets.env, as the other secrets are.
	path := filepath.Join(t.TempDir(), "secrets.env")
	var file strings.Builder
	for _, k := range requiredSecrets() {
		file.WriteString(k + "=x\n")
	}
	file.WriteString(secretDatabaseURL + "=postgres://kiln:db-s3cret@db/ideascube\n")
	require.NoError(t, os.WriteFile(path, []byte(file.String()), 0o600))
	loaded, err := loadSecrets(path, func(string) (string, bool) { return "", false })
	require.NoError(t, err)
	assert.Equal(t, "postgres://kiln:db-s3cret@db/ideascube", loaded[secretDatabaseURL])
}
