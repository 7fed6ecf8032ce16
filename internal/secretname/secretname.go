// Package secretname says which environment variables hold secrets, by
// their names: a name holding one of the words token, secret, passw, key
// or credential, in any case (GITHUB_TOKEN, DEBSIGN_KEYID, MY_PASSWORD).
// Both sides mask those variables' values wherever an environment is
// shown: kiln-worker in the headers it writes, the master in every
// worker's headers (buildbot-worker masks nothing), so both use this
// package, which imports only the standard library.
package secretname

import "strings"

// words are the words that make a name a secret's.
var words = []string{"token", "secret", "passw", "key", "credential"}

// Is reports whether the variable called name holds a secret.
func Is(name string) bool {
	for _, w := range words {
		for i := 0; i+len(w) <= len(name); i++ {
			if strings.EqualFold(name[i:i+len(w)], w) {
				return true
			}
		}
	}
	return false
}
