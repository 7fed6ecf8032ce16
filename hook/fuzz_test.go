package hook_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kilnci/kiln/ci"
	"github.com/kilnci/kiln/hook"
)

// seedEvents returns the testdata payloads of a dialect with the event
// each is sent with.
func seedEvents(f *testing.F, dir string, event func(name string) string) {
	f.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", dir, "*.json"))
	if err != nil || len(files) == 0 {
		f.Fatalf("no testdata in %s: %v", dir, err)
	}
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(event(filepath.Base(p)), b)
	}
}

// checkChanges holds for the changes of any payload.
func checkChanges(t *testing.T, changes []ci.Change) {
	for _, c := range changes {
		if c.Category == hook.CategoryNewTag && c.DedupKey != hook.TagKey(c.Repository, c.Branch) {
			t.Errorf("new tag change with key %q", c.DedupKey)
		}
		if c.Category != hook.CategoryNewTag && c.DedupKey != "" {
			t.Errorf("%s change with key %q", c.Category, c.DedupKey)
		}
		for k, v := range c.Properties {
			if err := ci.CheckValue(v); err != nil {
				t.Errorf("property %q: %v", k, err)
			}
		}
	}
}

func FuzzParseGitHub(f *testing.F) {
	seedEvents(f, "github", func(name string) string {
		event, _, _ := strings.Cut(strings.TrimSuffix(name, ".json"), "_")
		if strings.HasPrefix(name, "pull_request") {
			event = "pull_request"
		}
		return event
	})
	f.Fuzz(func(t *testing.T, event string, body []byte) {
		changes, err := hook.ParseGitHub(event, body)
		if err != nil {
			return
		}
		checkChanges(t, changes)
	})
}

func FuzzParseGitLab(f *testing.F) {
	seedEvents(f, "gitlab", func(name string) string {
		switch {
		case strings.HasPrefix(name, "push"):
			return "Push Hook"
		case strings.HasPrefix(name, "tag_push"):
			return "Tag Push Hook"
		}
		return "Merge Request Hook"
	})
	f.Fuzz(func(t *testing.T, event string, body []byte) {
		changes, err := hook.ParseGitLab(event, body)
		if err != nil {
			return
		}
		checkChanges(t, changes)
	})
}

func FuzzParseBase(f *testing.F) {
	f.Add("application/x-www-form-urlencoded", []byte("author=a&files=%5B%22x%22%5D&properties=%7B%22k%22%3A1%7D&when=3.5"))
	f.Add("application/json", []byte(`[{"author": "a", "files": ["x"], "properties": {"k": [1, {"a": null}]}, "when": 3}]`))
	f.Add("multipart/form-data; boundary=B", []byte("--B\r\nContent-Disposition: form-data; name=\"who\"\r\n\r\nx\r\n--B--\r\n"))
	f.Fuzz(func(t *testing.T, contentType string, body []byte) {
		changes, err := hook.ParseBase(contentType, body)
		if err != nil {
			return
		}
		for _, c := range changes {
			if c.DedupKey != "" {
				t.Errorf("base change with key %q", c.DedupKey)
			}
			for k, v := range c.Properties {
				if err := ci.CheckValue(v); err != nil {
					t.Errorf("property %q: %v", k, err)
				}
			}
		}
	})
}
