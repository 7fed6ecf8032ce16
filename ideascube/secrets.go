package main

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/kilnci/kiln/ci/secret"
)

// The secrets the master needs, with each worker's password (see
// workerSecret); IRC ones and the database URL are optional.
const (
	secretAdminUser     = "IDEASCUBE_ADMIN_USER"
	secretAdminPassword = "IDEASCUBE_ADMIN_PASSWORD"
	secretGitHub        = "IDEASCUBE_GITHUB_SECRET"
	secretGitLab        = "IDEASCUBE_GITLAB_SECRET"
	secretIRCServer     = "IDEASCUBE_IRC_SERVER"
	secretIRCNick       = "IDEASCUBE_IRC_NICK"
	// secretDatabaseURL, when set, is the postgres:// URL of the
	// master's database (state.sqlite otherwise): it holds a password.
	secretDatabaseURL = "IDEASCUBE_DATABASE_URL"
	// secretArchiveKey holds the archive's signing key, read from its
	// file (see loadArchiveKey), not from the environment.
	secretArchiveKey = "archive signing key"
)

// workerSecret names the secret holding a worker's password:
// IDEASCUBE_WORKER_AMD64_PASSWORD for worker-amd64.
func workerSecret(worker string) string {
	return "IDEASCUBE_" + strings.ToUpper(strings.NewReplacer("-", "_", ".", "_").Replace(worker)) + "_PASSWORD"
}

// requiredSecrets lists the secrets without which the master does not
// start: each worker's password, the admin's login, the hooks' secrets.
func requiredSecrets() []string {
	var names []string
	for _, w := range workers {
		names = append(names, workerSecret(w.name))
	}
	return append(names, secretAdminUser, secretAdminPassword, secretGitHub, secretGitLab)
}

// secrets holds the values read.
type secrets map[string]string

// loadSecrets reads the secrets from the environment, then from the
// KEY=VALUE file at path (if it exists) for those the environment lacks.
// A missing or empty required secret is an error naming it, never showing
// a value.
func loadSecrets(path string, lookup func(string) (string, bool)) (secrets, error) {
	file := map[string]string{}
	if st, err := os.Stat(path); err == nil && st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%s may be read by others (mode %04o): it holds passwords; chmod 600 %s", path, st.Mode().Perm(), path)
	}
	data, err := os.ReadFile(path)
	switch {
	case err == nil:
		if file, err = secret.ParseEnvFile(data); err != nil {
			return nil, fmt.Errorf("read %s: %w", path, err)
		}
	case !errors.Is(err, os.ErrNotExist):
		return nil, fmt.Errorf("read secrets: %w", err)
	}
	s := secrets{}
	for _, k := range append(requiredSecrets(), secretIRCServer, secretIRCNick, secretDatabaseURL) {
		if v, ok := lookup(k); ok && v != "" {
			s[k] = v
		} else if v := file[k]; v != "" {
			s[k] = v
		}
	}
	var missing []string
	for _, k := range requiredSecrets() {
		if s[k] == "" {
			missing = append(missing, k)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("missing secrets (set them in the environment or in %s): %s", path, strings.Join(missing, ", "))
	}
	return s, nil
}

// loadArchiveKey reads the archive's signing key: an ASCII-armoured
// OpenPGP secret key, in a file only its owner may read. Errors name the
// file and say how to make one, never show its content.
func loadArchiveKey(path string) (string, error) {
	st, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("the archive's signing key %s is missing: make one with "+
			"gpg --batch --passphrase '' --quick-gen-key 'Ideascube archive' ed25519 sign never, "+
			"then gpg --armor --export-secret-keys 'Ideascube archive' > %s; chmod 600 %s "+
			"(or give -archive-unsigned, for tests)", path, path, path)
	}
	if err != nil {
		return "", fmt.Errorf("read the archive's signing key: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("the archive's signing key %s may be read by others (mode %04o): chmod 600 it", path, st.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read the archive's signing key: %w", err)
	}
	if !strings.Contains(string(b), "-----BEGIN PGP PRIVATE KEY BLOCK-----") {
		return "", fmt.Errorf("the archive's signing key %s is not an ASCII-armoured OpenPGP secret key (gpg --armor --export-secret-keys)", path)
	}
	return string(b), nil
}
