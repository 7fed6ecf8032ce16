package ci

import (
	"encoding/base64"
	"fmt"
	"net/url"
	"regexp"
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
	for _, in := range maskCases {
		if got, want := MaskEnviron(in), maskEnvironRegexp(in); got != want {
			t.Errorf("MaskEnviron(%q) = %q, want %q", in, got, want)
		}
	}
}

// maskCases are headers at the edges of what an environment line is.
var maskCases = []string{
	"",
	"=",
	"  KEY=v",
	"  KEY=v\n",
	"  KEY=***\n  KEY=****\n  KEY=**\n",
	"  KEY=\n  TOKEN=\r\n  X=1\r\n",
	"   KEY=three spaces\n KEY=one\nKEY=none\n\tKEY=tab\n",
	"  1KEY=digit first\n  _KEY=underscore\n  K_1EY=x\n  KE-Y=dash\n  =no name\n",
	"  my_Passwd=x\n  PASSWORD=a=b=c\n  apiKey=x\n  Credentials=x\n  SeCrEt=x\n",
	"  PATH=/bin\n  HOME=/root\n  LANG=C.UTF-8\n",
	"  KEY=\u00e9t\u00e9\n  CL\u00c9=x\n  \u212aEY=kelvin\n",
	"a\n\n\n  TOKEN=x\n\n",
}

// maskEnvironRegexp is MaskEnviron as regular expressions say it: the
// reference it is checked against.
func maskEnvironRegexp(header string) string {
	return environLineRE.ReplaceAllStringFunc(header, func(line string) string {
		m := environLineRE.FindStringSubmatch(line)
		if !secretNameRE.MatchString(m[1]) || m[2] == "***" {
			return line
		}
		return m[1] + "***"
	})
}

var (
	environLineRE = regexp.MustCompile(`(?m)^(  [A-Za-z_][A-Za-z0-9_]*=)(.*)$`)
	secretNameRE  = regexp.MustCompile(`(?i)token|secret|passw|key|credential`)
)

// FuzzMaskEnviron checks MaskEnviron against its regular expressions.
func FuzzMaskEnviron(f *testing.F) {
	for _, c := range maskCases {
		f.Add(c)
	}
	f.Fuzz(func(t *testing.T, header string) {
		if got, want := MaskEnviron(header), maskEnvironRegexp(header); got != want {
			t.Errorf("MaskEnviron(%q) = %q, want %q", header, got, want)
		}
	})
}

// BenchmarkMaskEnviron masks the header of a shell command as kiln-worker
// writes it: the command, its folder and an environment of 40 variables,
// two of them secret.
func BenchmarkMaskEnviron(b *testing.B) {
	var h strings.Builder
	h.WriteString("sh -c 'make check'\n in dir /var/lib/kiln-worker/ideascube/build\n watching logfiles {}\n argv: [sh -c make check]\n environment:\n")
	for i := range 38 {
		fmt.Fprintf(&h, "  VARIABLE_%d=/usr/local/lib/value/%d:/usr/lib\n", i, i)
	}
	h.WriteString("  GITHUB_TOKEN=ghp_0123456789abcdef\n  DEBSIGN_KEYID=0x1234\n using PTY: False\n")
	header := h.String()
	want := maskEnvironRegexp(header)
	b.SetBytes(int64(len(header)))
	b.ReportAllocs()
	for b.Loop() {
		if MaskEnviron(header) != want {
			b.Fatal("masked wrongly")
		}
	}
}
