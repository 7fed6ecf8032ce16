package ci

import (
	"context"
	"errors"
	"fmt"
)

// ErrSecretNotFound is returned by a SecretProvider that does not have the
// secret asked for.
var ErrSecretNotFound = errors.New("secret not found")

// A SecretProvider gives secrets by name: passwords and tokens that builds
// use through Interpolate's %(secret:name)s, kept out of the configuration
// and out of the store. The master asks its providers in order and takes
// the first answer; it then redacts the value everywhere (see Redactor).
// Providers are called concurrently. Package ci/secret has providers that
// read the environment, a folder of files and a KEY=VALUE file.
type SecretProvider interface {
	// Secret returns the value of the secret called name, or an error
	// wrapping ErrSecretNotFound.
	Secret(ctx context.Context, name string) (string, error)
}

// Secret returns the secret called name from the master's providers, and
// from then on redacts its value everywhere the master writes (see
// Redactor).
func (m *Master) Secret(ctx context.Context, name string) (string, error) {
	if len(m.cfg.Secrets) == 0 {
		return "", fmt.Errorf("secret %q: no secret providers are configured", name)
	}
	for _, p := range m.cfg.Secrets {
		v, err := p.Secret(ctx, name)
		if errors.Is(err, ErrSecretNotFound) {
			continue
		}
		if err != nil {
			return "", fmt.Errorf("secret %q: %w", name, err)
		}
		m.redactor.Add(name, v)
		return v, nil
	}
	return "", fmt.Errorf("secret %q: %w", name, ErrSecretNotFound)
}

// Secret implements Interpolate's %(secret:name)s for the step's build.
func (s *StepRun) Secret(ctx context.Context, name string) (string, error) {
	return s.build.m.Secret(ctx, name)
}
