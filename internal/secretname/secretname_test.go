package secretname

import (
	"regexp"
	"testing"
)

// Is says of a variable's name what the regular expression it replaced
// said.
func TestIs(t *testing.T) {
	re := regexp.MustCompile(`(?i)token|secret|passw|key|credential`)
	for _, name := range []string{
		"", "K", "KE", "KEY", "key", "Key", "MONKEY", "KEYS", "KEEP", "API_TOKEN", "token_", "TOKE",
		"GITHUB_SECRET", "SECRE", "PASSWD", "MY_PASSWORD", "PASS", "PASW", "AWS_CREDENTIALS", "CREDENTIAL", "CREDENTIA",
		"HOME", "PATH", "LANG", "PYTHONPATH", "DEBSIGN_KEYID", "sEcReT", "x_pAsSw_y",
	} {
		if got, want := Is(name), re.MatchString(name); got != want {
			t.Errorf("Is(%q) = %v, the expression says %v", name, got, want)
		}
	}
}
