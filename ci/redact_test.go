package ci

import (
	"encoding/base64"
	"net/url"
	"strings"
	"testing"
)

func TestRedactor(t *testing.T) {
	var r Redactor
	secret := "hunter2-S3cret/+value"
	r.Add("token", secret)
	r.Add("short", "abc") // too short: ignored
	tests := []struct {
		name, in, want string
	}{
		{"plain", "login with " + secret + " now", "login with <token> now"},
		{"twice", secret + secret, "<token><token>"},
		{"url", "https://x/?t=" + url.QueryEscape(secret), "https://x/?t=<token>"},
		{"path", "/p/" + url.PathEscape(secret), "/p/<token>"},
		{"shell", "echo " + ShellQuote(secret), "echo <token>"},
		{"short untouched", "abc abc", "abc abc"},
		{"unrelated", "nothing to see", "nothing to see"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := r.Redact(tt.in); got != tt.want {
				t.Errorf("Redact(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
	// base64 at every alignment, inside longer encoded data.
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawStdEncoding} {
		for _, prefix := range []string{"", "a", "ab", "abc", "user:"} {
			data := enc.EncodeToString([]byte(prefix + secret + "tail"))
			got := r.Redact(data)
			if !strings.Contains(got, "<token>") {
				t.Errorf("base64 of %q+secret not redacted: %q", prefix, got)
			}
		}
	}
	// Multi-line secrets: each line is hidden.
	r.Add("key", "-----BEGIN KEY-----\nMIIEvQIBADANBgkqhkiG9w0B\n-----END KEY-----")
	if got := r.Redact("x MIIEvQIBADANBgkqhkiG9w0B y"); got != "x <key> y" {
		t.Errorf("a line of a multi-line secret: %q", got)
	}
	// Values in properties.
	v := r.RedactValue(map[string]any{"a": []any{"t=" + secret, 3}, "b": secret})
	if m := v.(map[string]any); m["b"] != "<token>" || m["a"].([]any)[0] != "t=<token>" || m["a"].([]any)[1] != 3 {
		t.Errorf("RedactValue = %#v", v)
	}
	var nilR *Redactor
	if nilR.Redact(secret) != secret {
		t.Error("a nil redactor changes text")
	}
}

func FuzzRedact(f *testing.F) {
	f.Add("s3cret-value", "before s3cret-value after", 0)
	f.Add("p@ss word/+=", "x", 1)
	f.Add("ünïcødé-secret", "…ünïcødé-secret…", 2)
	f.Fuzz(func(t *testing.T, secret, text string, where int) {
		if len(secret) < MinSecretLength || strings.ContainsAny(secret, "<>") {
			return
		}
		var r Redactor
		r.Add("s", secret)
		// Put the secret, in one of its forms, into the text.
		forms := []string{secret, url.QueryEscape(secret), ShellQuote(secret), base64.StdEncoding.EncodeToString([]byte(text + secret))}
		if where < 0 {
			where = -where
		}
		in := text + forms[where%len(forms)] + text
		out := r.Redact(in)
		if strings.Contains(out, secret) {
			t.Fatalf("the secret survived: %q -> %q", in, out)
		}
		if where%len(forms) != 3 && !strings.Contains(out, "<s>") {
			t.Fatalf("nothing redacted: %q -> %q", in, out)
		}
		// Text without the secret and its forms is left as it is.
		clean := strings.ReplaceAll(text, secret, "")
		for _, f := range secretForms(secret) {
			if strings.Contains(clean, f) {
				return
			}
		}
		if got := r.Redact(clean); got != clean {
			t.Fatalf("text without the secret changed: %q -> %q", clean, got)
		}
	})
}

func TestMaskEnviron(t *testing.T) {
	header := "sh -c 'make'\n in dir /w/build\n environment:\n  API_TOKEN=abc\n  GITHUB_SECRET=x y\n  HOME=/home/w\n" +
		"  MY_PASSWORD=pw\n  SSH_KEY=k\n  AWS_CREDENTIALS=c\n  PATH=/bin\n using PTY: False\n"
	got := MaskEnviron(header)
	want := "sh -c 'make'\n in dir /w/build\n environment:\n  API_TOKEN=***\n  GITHUB_SECRET=***\n  HOME=/home/w\n" +
		"  MY_PASSWORD=***\n  SSH_KEY=***\n  AWS_CREDENTIALS=***\n  PATH=/bin\n using PTY: False\n"
	if got != want {
		t.Errorf("MaskEnviron:\n%s\nwant:\n%s", got, want)
	}
	if s := MaskEnviron("no environment here\n"); s != "no environment here\n" {
		t.Errorf("MaskEnviron changed %q", s)
	}
}
