package worker_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kilnci/kiln/worker"
)

func TestConfig_RoundTrip(t *testing.T) {
	dir := t.TempDir()
	for _, w := range []*worker.Worker{
		{Master: "ci.example.org:9989", Name: "slave-amd64", Password: "s3cret", BaseDir: "/srv/buildbot/slave-amd64"},
		{Master: "wss://ci.example.org/", Name: "w", Password: ` "quoted" # with = and spaces `, BaseDir: dir,
			CAFile: "ca.pem", Unconfined: true, DeleteLeftoverDirs: true, MaxBackoff: 90 * time.Second},
		{Master: "[::1]:9989", Name: "w", Password: "", BaseDir: dir},
		{Master: "h", Name: "w", Password: "new\nline\ttab"},
	} {
		got, err := worker.ParseConfig(worker.FormatConfig(w), dir)
		require.NoError(t, err, "%s", worker.FormatConfig(w))
		want := *w
		if want.BaseDir == "" {
			want.BaseDir = dir // relocatable: the folder of the file
		}
		assert.Equal(t, &want, got)
	}
}

func TestConfig_Parse(t *testing.T) {
	dir := t.TempDir()
	w, err := worker.ParseConfig([]byte(`
# comment
  master = localhost:9989
name=w1
password = pass word
basedir = sub
`), dir)
	require.NoError(t, err)
	assert.Equal(t, &worker.Worker{Master: "localhost:9989", Name: "w1", Password: "pass word", BaseDir: filepath.Join(dir, "sub")}, w)

	_, err = worker.ParseConfig([]byte("master=x\nmaster=y\ncolour=blue\nunconfined=maybe\nmax_backoff=-1s\njunk\npassword=\"unterminated\n"), dir)
	require.Error(t, err)
	for _, want := range []string{
		"line 2: master given twice", `line 3: unknown key "colour"`, "line 4: unconfined", "line 5: max_backoff",
		"line 6: not KEY=VALUE", "line 7: password: bad quoted value", "no name", "no password",
	} {
		assert.ErrorContains(t, err, want)
	}
}

func TestReadConfig(t *testing.T) {
	dir := t.TempDir()
	_, err := worker.ReadConfig(dir)
	assert.ErrorIs(t, err, os.ErrNotExist)
	require.NoError(t, os.WriteFile(filepath.Join(dir, worker.ConfigFile), []byte("master=m\nname=n\n"), 0o600))
	_, err = worker.ReadConfig(dir)
	assert.ErrorContains(t, err, worker.ConfigFile)
	assert.ErrorContains(t, err, "no password")
}
