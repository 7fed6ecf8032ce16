package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kilnci/kiln/ci"
	"github.com/kilnci/kiln/ci/citest"
	"github.com/kilnci/kiln/ci/steps/debian"
	"github.com/kilnci/kiln/webui"
)

// dputLocalHost is the dput configuration of a host of method local that
// puts uploads into incoming: what the guide gives the amd64 machine as
// [local], and what the end-to-end tests give their workers.
func dputLocalHost(name, incoming string) string {
	return fmt.Sprintf("[%s]\nmethod = local\nincoming = %s\nallow_unsigned_uploads = 1\nrun_dinstall = 0\npost_upload_command =\n", name, incoming)
}

// guideMasterDir is the master's folder in the guide, as the unit gives
// it (-basedir).
func guideMasterDir(t *testing.T) string {
	t.Helper()
	unit, err := os.ReadFile(filepath.Join("deploy", "kiln-master.service"))
	require.NoError(t, err)
	m := regexp.MustCompile(`(?m)^ExecStart=\S+ .*-basedir (\S+)`).FindSubmatch(unit)
	require.NotNil(t, m, "the unit's -basedir")
	return string(m[1])
}

// guideConfig is the master's configuration with the guide's defaults.
func guideConfig(t *testing.T) (options, ci.MasterConfig) {
	t.Helper()
	o := defaultOptions()
	o.BaseDir = guideMasterDir(t)
	cfg, err := config(o, testSecrets())
	require.NoError(t, err)
	return o, cfg
}

// guideSudoers checks the guide's sudoers line and sbuild-update command
// against what the configured SbuildUpdate step runs, and what it asks
// for when sudo refuses it: the step is run, through a sudo that records
// its arguments and asks for a password.
func guideSudoers(t *testing.T, guide string) {
	_, cfg := guideConfig(t)
	var update *debian.SbuildUpdate
	for _, b := range cfg.Builders {
		if b.Name != "build-amd64-pkg" {
			continue
		}
		for _, s := range b.Steps {
			if u, ok := s.(*debian.SbuildUpdate); ok {
				update = u
			}
		}
	}
	require.NotNil(t, update, "build-amd64-pkg upgrades its chroot")
	run := *update
	run.Locks = nil
	run.LockFile = ""
	bin := t.TempDir()
	argv := filepath.Join(bin, "argv")
	require.NoError(t, os.WriteFile(filepath.Join(bin, "sudo"), []byte("#!/bin/sh\nprintf '%s\\n' \"$*\" > "+argv+
		"\necho 'sudo: a password is required' >&2\nexit 1\n"), 0o755))
	run.Env = map[string]any{"PATH": []any{bin, "${PATH}"}}
	m := citest.Start(t, ci.MasterConfig{
		BaseDir:  t.TempDir(),
		Workers:  []ci.WorkerConfig{{Name: "worker-amd64"}},
		Builders: []ci.BuilderConfig{{Name: "build-amd64-pkg", Workers: []string{"worker-amd64"}, Properties: map[string]any{"arch": "amd64"}, Steps: []ci.Step{&run}}},
	})
	b := m.Build(t, citest.Request{Builder: "build-amd64-pkg"})
	require.Equal(t, ci.Failure, b.Results())
	summary := b.Step("sbuild-update").StateString

	// The sudoers line the step asks for is the guide's, for the user the
	// guide creates.
	asked := regexp.MustCompile(`with a sudoers line such as: (.+) \(failure\)$`).FindStringSubmatch(summary)
	require.NotNil(t, asked, summary)
	line := asked[1]
	inGuide := regexp.MustCompile("\n```\n(\\S+ ALL=.*)\n```\n").FindStringSubmatch(guide)
	require.NotNil(t, inGuide, "the guide's sudoers line")
	assert.Equal(t, line, inGuide[1], "the guide's sudoers line is the one the step asks for")
	user := regexp.MustCompile(`# useradd .* (\w+)\n`).FindStringSubmatch(guide)
	require.NotNil(t, user, "the guide's useradd")
	assert.Equal(t, user[1], strings.Fields(line)[0], "the sudoers line is for the user the guide creates")

	// The command in the guide is the one the step runs.
	ran, err := os.ReadFile(argv)
	require.NoError(t, err)
	cmd := regexp.MustCompile("`(sudo -n sbuild-update[^`]*)`").FindStringSubmatch(guide)
	require.NotNil(t, cmd, "the guide's sbuild-update command")
	said := strings.Join(strings.Fields(strings.NewReplacer("$dist", "jessie", "$arch", "amd64").Replace(cmd[1])), " ")
	assert.Equal(t, "sudo "+strings.TrimSpace(string(ran)), said)

	// The line allows that command: it names the program sudo finds for
	// "sbuild-update", with any arguments (no argument list in the rule).
	rule := regexp.MustCompile(`^\S+ ALL=\(root\) NOPASSWD: (/\S+)$`).FindStringSubmatch(line)
	require.NotNil(t, rule, "a rule for one program, any arguments: %s", line)
	assert.Equal(t, strings.Fields(string(ran))[1], path.Base(rule[1]))
	if p, err := exec.LookPath("sbuild-update"); err == nil {
		assert.Equal(t, rule[1], p, "the rule names the program where the sbuild package installs it")
	}
	if visudo, err := exec.LookPath("visudo"); err == nil {
		file := filepath.Join(t.TempDir(), "kiln-sbuild-update")
		require.NoError(t, os.WriteFile(file, []byte(line+"\n"), 0o440))
		out, err := exec.Command(visudo, "-cqf", file).CombinedOutput()
		assert.NoError(t, err, "visudo -c: %s", out)
	}
}

// guideDput checks the guide's dput configuration: [local] is what the
// end-to-end tests give their workers, both hosts put uploads into the
// master's incoming folder and take them unsigned (the builds do not sign
// them), and they are the hosts the workers' dput_method names.
func guideDput(t *testing.T, guide string) {
	o, cfg := guideConfig(t)
	incoming := filepath.Join(o.BaseDir, archiveOf(t, cfg).IncomingFolder())
	blocks := map[string]string{}
	for _, m := range regexp.MustCompile("(?s)\n```\n(\\[(\\w+)\\]\n[^`]*)```\n").FindAllStringSubmatch(guide, -1) {
		blocks[m[2]] = m[1]
	}
	var methods []string
	for _, w := range workers {
		methods = append(methods, w.dputMethod)
	}
	keys := make([]string, 0, len(blocks))
	for k := range blocks {
		keys = append(keys, k)
	}
	assert.ElementsMatch(t, methods, keys, "the guide configures the dput hosts the workers upload with")

	assert.Equal(t, dputLocalHost("local", incoming), blocks["local"])
	remote := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(blocks["remote"]), "\n")[1:] {
		k, v, ok := strings.Cut(l, " = ")
		require.True(t, ok, l)
		remote[k] = v
	}
	assert.Equal(t, incoming, remote["incoming"])
	assert.Equal(t, "1", remote["allow_unsigned_uploads"], "the builds' uploads are not signed")
	assert.Equal(t, "0", remote["run_dinstall"])
	assert.Equal(t, "scp", remote["method"])
	assert.Contains(t, guide, "`"+incoming+"`", "the guide names the incoming folder")
}

// guideAPT checks the guide's APT line and key download against where
// the master serves the archive: its public URL, the web server's mount
// of the archive, the distribution and its components.
func guideAPT(t *testing.T, guide string) {
	o, cfg := guideConfig(t)
	archive := archiveOf(t, cfg)
	var mount string
	var handler http.Handler
	for _, s := range cfg.Services {
		if w, ok := s.(*webui.Server); ok {
			require.Len(t, w.Mounts, 1, "the web server mounts the archive, alone")
			for prefix, h := range w.Mounts {
				mount, handler = prefix, h
			}
		}
	}
	require.NotEmpty(t, mount, "the archive is mounted on the web server")
	base := strings.TrimSuffix(cfg.PublicURL, "/") + strings.TrimSuffix(mount, "/")
	require.Len(t, archive.Distributions, 1)
	d := archive.Distributions[0]
	assert.Equal(t, o.Dist, d.Codename)

	curl := regexp.MustCompile(`# curl -o (\S+) (\S+)\n`).FindStringSubmatch(guide)
	require.NotNil(t, curl, "the guide's key download")
	assert.Equal(t, base+"/"+debian.ArchiveKeyFile, curl[2])
	apt := regexp.MustCompile(`# echo '(deb .*)' > /etc/apt/sources.list.d/ideascube.list\n`).FindStringSubmatch(guide)
	require.NotNil(t, apt, "the guide's APT line")
	assert.Equal(t, fmt.Sprintf("deb [signed-by=%s] %s %s %s", curl[1], base, d.Codename, strings.Join(d.Components, " ")), apt[1])

	// The mount leads to the archive: one not yet prepared answers 503
	// for its Release, where any other handler would say 404.
	u := strings.TrimPrefix(base, strings.TrimSuffix(cfg.PublicURL, "/")) + "/dists/" + d.Codename + "/Release"
	rec := httptest.NewRecorder()
	handler.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, u, nil))
	assert.Equal(t, http.StatusServiceUnavailable, rec.Code, u)
	rec = httptest.NewRecorder()
	handler.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/elsewhere/dists/"+d.Codename+"/Release", nil))
	assert.Equal(t, http.StatusNotFound, rec.Code)
}
