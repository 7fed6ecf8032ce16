package kiln_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// fencedGo finds the Go blocks of a Markdown text.
var fencedGo = regexp.MustCompile("(?s)```go\n(.*?)```")

// TestMigrationGuide_Compiles: the Kiln side of every piece of
// doc/migrating-from-buildbot.md compiles, as one file with the imports
// the guide lists, in a package of this module that exists only for the
// build (go build -overlay).
func TestMigrationGuide_Compiles(t *testing.T) {
	guide, err := os.ReadFile("doc/migrating-from-buildbot.md")
	if err != nil {
		t.Fatal(err)
	}
	imports := regexp.MustCompile("(?s)```\n(import \\(.*?\\))\n```").FindSubmatch(guide)
	if imports == nil {
		t.Fatal("the guide lists no imports")
	}
	blocks := fencedGo.FindAllSubmatch(guide, -1)
	if len(blocks) < 8 {
		t.Fatalf("the guide has %d Go blocks, want one per piece", len(blocks))
	}
	var src strings.Builder
	src.WriteString("package migration\n\n")
	src.Write(imports[1])
	for _, b := range blocks {
		src.WriteString("\n\n")
		src.Write(b[1])
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "guide.go")
	if err := os.WriteFile(file, []byte(src.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	overlay, err := json.Marshal(map[string]map[string]string{
		"Replace": {filepath.Join(wd, "doc", "migration", "guide.go"): file},
	})
	if err != nil {
		t.Fatal(err)
	}
	overlayFile := filepath.Join(dir, "overlay.json")
	if err := os.WriteFile(overlayFile, overlay, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("go", "build", "-overlay", overlayFile, "./doc/migration").CombinedOutput()
	if err != nil {
		t.Fatalf("the guide's Go does not compile: %v\n%s\n%s", err, out, numbered(src.String()))
	}
}

func numbered(s string) string {
	var b strings.Builder
	for i, l := range strings.Split(s, "\n") {
		b.WriteString(strings.Repeat(" ", 4-len(itoa(i+1))) + itoa(i+1) + "  " + l + "\n")
	}
	return b.String()
}

func itoa(i int) string {
	if i == 0 {
		return "0"
	}
	var d []byte
	for ; i > 0; i /= 10 {
		d = append([]byte{byte('0' + i%10)}, d...)
	}
	return string(d)
}
