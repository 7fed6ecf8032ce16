package remote

import (
	"sync"
	"unique"
)

// sharedInfo lets the connections of a Listener share what their
// workers' get_worker_info answers have in common, which the master keeps
// for as long as each worker is connected: the names of the fields, the
// values alike from worker to worker (system, version, the os_* fields,
// the environment's variables) and the worker_commands map, identical
// across workers of one version. A fleet of alike workers then holds
// them once rather than once per worker. Strings are interned with the
// unique package, so that those no connection uses any more are
// collected.
type sharedInfo struct {
	mu       sync.Mutex
	commands map[string]any // the last worker_commands seen
}

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
				out[intern(k)] = intern(v)
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
	env := make(map[string]string, len(environ))
	for k, v := range environ {
		env[intern(k)] = intern(v)
	}
	return out, env
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
