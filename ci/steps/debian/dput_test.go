package debian_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kilnci/kiln/ci"
	"github.com/kilnci/kiln/ci/citest"
	"github.com/kilnci/kiln/ci/steps/debian"
	"github.com/kilnci/kiln/internal/debtest"
	"github.com/kilnci/kiln/internal/testenv"
)

// dputConfig writes a dput configuration whose host "local" copies
// uploads into incoming.
func dputConfig(t *testing.T) (config, incoming string) {
	dir := t.TempDir()
	incoming = filepath.Join(dir, "incoming")
	require.NoError(t, os.MkdirAll(incoming, 0o755))
	config = filepath.Join(dir, "dput.cf")
	require.NoError(t, os.WriteFile(config, []byte("[local]\nmethod = local\nincoming = "+incoming+
		"\nallow_unsigned_uploads = 1\nrun_dinstall = 0\npost_upload_command =\n"), 0o644))
	return config, incoming
}

func TestDput(t *testing.T) {
	testenv.SkipIfShort(t, "builds a package to upload")
	testenv.NeedTool(t, "dput")
	config, incoming := dputConfig(t)
	upload := func(name string, force any) ci.Step {
		return &debian.Dput{StepOptions: ci.StepOptions{Name: name}, Host: ci.Interpolate("%(prop:dput_method)s"), Config: config, Force: force}
	}
	m := start(t, map[string]any{"dput_method": "local"}, upload("first", nil), upload("again", nil), upload("forced", true))
	changes := builtPackage(t, debtest.Source{}, builderDir(m))
	b := m.Build(t, citest.Request{Builder: "pkg", Properties: map[string]any{debian.PropChanges: changes}})

	assert.Equal(t, ci.Success, b.Step("first").Results)
	assert.Equal(t, "uploaded kiln-hello_1.0_amd64.changes to local", b.Step("first").StateString)
	for _, f := range append(debtest.Files(t, filepath.Join(builderDir(m), changes)), changes) {
		assert.FileExists(t, filepath.Join(incoming, f))
	}
	assert.Equal(t, ci.Failure, b.Step("again").Results, "dput uploads a version once")
	assert.Equal(t, "kiln-hello_1.0_amd64.changes was already uploaded to local (dput keeps kiln-hello_1.0_amd64.local.upload): "+
		"a version is uploaded once; raise the version, or set Force (failure)", b.Step("again").StateString)
	assert.Equal(t, ci.Success, b.Step("forced").Results)
	assert.Contains(t, b.Header("forced", "stdio"), "dput -c "+config+" -f local kiln-hello_1.0_amd64.changes\n")
}

// TestDput_Unchecked: dput checks the signature of an upload unless its
// host allows unsigned uploads; Unchecked (-u) skips the check.
func TestDput_Unchecked(t *testing.T) {
	testenv.SkipIfShort(t, "builds a package to upload")
	testenv.NeedTool(t, "dput")
	dir := t.TempDir()
	incoming := filepath.Join(dir, "incoming")
	require.NoError(t, os.MkdirAll(incoming, 0o755))
	config := filepath.Join(dir, "dput.cf")
	require.NoError(t, os.WriteFile(config, []byte("[local]\nmethod = local\nincoming = "+incoming+
		"\nrun_dinstall = 0\npost_upload_command =\n"), 0o644))
	m := start(t, map[string]any{"unsigned": "yes"},
		&debian.Dput{StepOptions: ci.StepOptions{Name: "checked"}, Host: "local", Config: config},
		&debian.Dput{StepOptions: ci.StepOptions{Name: "unchecked"}, Host: "local", Config: config, Unchecked: ci.Interpolate("%(prop:unsigned)s")})
	changes := builtPackage(t, debtest.Source{}, builderDir(m))
	b := m.Build(t, citest.Request{Builder: "pkg", Properties: map[string]any{debian.PropChanges: changes}})

	assert.Equal(t, ci.Failure, b.Step("checked").Results)
	assert.Equal(t, "dput could not verify the signature of kiln-hello_1.0_amd64.changes (gpgme_op_verify: GPGME: No data): sign the upload, "+
		"or set Unchecked for a host that takes unsigned uploads (failure)", b.Step("checked").StateString)
	assert.Contains(t, b.Header("checked", "stdio"), "dput -c "+config+" local kiln-hello_1.0_amd64.changes\n")
	assert.Equal(t, ci.Success, b.Step("unchecked").Results)
	assert.Equal(t, "uploaded kiln-hello_1.0_amd64.changes to local", b.Step("unchecked").StateString)
	assert.Contains(t, b.Header("unchecked", "stdio"), "dput -c "+config+" -u local kiln-hello_1.0_amd64.changes\n")
	for _, f := range append(debtest.Files(t, filepath.Join(builderDir(m), changes)), changes) {
		assert.FileExists(t, filepath.Join(incoming, f))
	}
}

func TestDput_Refused(t *testing.T) {
	testenv.SkipIfShort(t, "builds a package to upload")
	testenv.NeedTool(t, "dput")
	config, incoming := dputConfig(t)
	m := start(t, map[string]any{"dput_method": "local"},
		&debian.Dput{StepOptions: ci.StepOptions{Name: "nohost"}, Host: "ppa", Config: config, Changes: ci.Prop("good")},
		&debian.Dput{StepOptions: ci.StepOptions{Name: "defaultconfig"}, Host: "nowhere-kiln", Changes: ci.Prop("good")},
		&debian.Dput{StepOptions: ci.StepOptions{Name: "up"}, Host: "local", Config: config, Changes: "../../x.changes"},
		&debian.Dput{StepOptions: ci.StepOptions{Name: "absolute"}, Host: "local", Config: config, Changes: "/etc/x.changes"},
		&debian.Dput{StepOptions: ci.StepOptions{Name: "notchanges"}, Host: "local", Config: config, Changes: ci.Prop("deb")},
		&debian.Dput{StepOptions: ci.StepOptions{Name: "option"}, Host: "-f", Config: config, Changes: ci.Prop("good")},
		&debian.Dput{StepOptions: ci.StepOptions{Name: "inside"}, Host: "local", Config: config,
			Changes: ci.Interpolate("%(prop:builddir)s/%(prop:good)s")},
	)
	changes := builtPackage(t, debtest.Source{}, builderDir(m))
	b := m.Build(t, citest.Request{Builder: "pkg", Properties: map[string]any{"good": changes, "deb": "kiln-hello_1.0_amd64.deb"}})
	state := func(step string) string { return b.Step(step).StateString }
	assert.Equal(t, `dput host "ppa" is not defined in `+config+` (failure)`, state("nohost"))
	assert.Equal(t, `dput host "nowhere-kiln" is not defined in /etc/dput.cf or ~/.dput.cf (failure)`, state("defaultconfig"))
	assert.Equal(t, `refused: "../../x.changes" is outside the build folder (failure)`, state("up"))
	assert.Contains(t, state("absolute"), `refused: "/etc/x.changes" is outside the build folder `)
	assert.Equal(t, `refused: "kiln-hello_1.0_amd64.deb" is not a .changes file (failure)`, state("notchanges"))
	assert.Equal(t, `refused: "-f" is not a dput host name (failure)`, state("option"))
	assert.Equal(t, "uploaded kiln-hello_1.0_amd64.changes to local", state("inside"), "an absolute path within the build folder")
	entries, err := os.ReadDir(incoming)
	require.NoError(t, err)
	assert.Len(t, entries, len(debtest.Files(t, filepath.Join(builderDir(m), changes)))+1, "only the accepted upload arrived")
}
