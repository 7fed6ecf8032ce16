package remote

import (
	"maps"
	"sync"
	"unique"
)

// sharedInfo lets the connections of a Listener share what their
// workers' get_worker_info answers have in common, which the master keeps
// for as long as each worker is connected: the names of the fields, the
// values alike from worker to worker (system, version, the os_* fields,
// the environment's variables) and the worker_commands map, identical
// across workers of one version, and the environment when it is the
// same as the last worker's. A fleet of alike workers then holds them
// once rather than once per worker. Strings are interned with the unique
// package, so that those no connection uses any more are collected.
type sharedInfo struct {
	mu       sync.Mutex
	commands map[string]any    // the last worker_commands seen
	environ  map[string]string // the last environment seen
	// boxed are interned strings as interface values (a string stored in
	// an any is a pointer to a copy of its header): the info's values
	// then point to these. At most maxBoxed are kept.
	boxed map[string]any
}

// maxBoxed bounds sharedInfo.boxed, which starts again when full (a
// value seen by a worker that has gone stays there until then).
const maxBoxed = 512

// perWorker are the fields of get_worker_info whose values differ from
// worker to worker: interning them would cost more than it saves.
var perWorker = map[string]bool{"basedir": true, "host": true}

// share returns a copy of info whose strings and worker_commands are
// shared with other connections where they are equal, and environ, the
// worker's environment, likewise. info is not modified; neither the copy
// nor environ may be.
func (s *sharedInfo) share(info map[string]any, environ map[string]string) (map[string]any, map[string]string) {
	out := make(map[string]any, len(info))
	for k, v := range info {
		switch v := v.(type) {
		case string:
			if !perWorker[k] {
				out[intern(k)] = s.box(v)
				continue
			}
		case map[string]any:
			if k == "worker_commands" {
				out[intern(k)] = s.sameCommands(v)
				continue
			}
		}
		out[intern(k)] = v
	}
	return out, s.sameEnviron(environ)
}

// box returns str interned, as an interface value shared with the other
// workers' infos.
func (s *sharedInfo) box(str string) any {
	s.mu.Lock()
	defer s.mu.Unlock()
	if v, ok := s.boxed[str]; ok {
		return v
	}
	if s.boxed == nil || len(s.boxed) >= maxBoxed {
		s.boxed = map[string]any{}
	}
	str = intern(str)
	v := any(str)
	s.boxed[str] = v
	return v
}

// sameEnviron returns the environment seen last if it is equal to env,
// env's copy (with its strings interned) otherwise.
func (s *sharedInfo) sameEnviron(env map[string]string) map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.environ != nil && maps.Equal(s.environ, env) {
		return s.environ
	}
	out := make(map[string]string, len(env))
	for k, v := range env {
		out[intern(k)] = intern(v)
	}
	s.environ = out
	return out
}

// sameCommands returns the worker_commands map seen last if it is equal
// to cmds, cmds (with its strings interned) otherwise.
func (s *sharedInfo) sameCommands(cmds map[string]any) map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	if equalStrings(s.commands, cmds) {
		return s.commands
	}
	out := make(map[string]any, len(cmds))
	for k, v := range cmds {
		if str, ok := v.(string); ok {
			v = intern(str)
		}
		out[intern(k)] = v
	}
	if equalStrings(out, out) { // strings only: comparable to the next
		s.commands = out
	}
	return out
}

// equalStrings reports whether a and b hold the same keys with equal
// string values (and nothing but strings).
func equalStrings(a, b map[string]any) bool {
	if a == nil || len(a) != len(b) {
		return false
	}
	for k, v := range a {
		sa, ok := v.(string)
		if !ok {
			return false
		}
		sb, ok := b[k].(string)
		if !ok || sa != sb {
			return false
		}
	}
	return true
}

func intern(s string) string { return unique.Make(s).Value() }
