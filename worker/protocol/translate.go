package protocol

import (
	"fmt"
	"maps"
	"strings"
)

// A Target is what TranslateArgs needs to know of the worker a command goes
// to.
type Target struct {
	// BuilderDir is the builder's folder on the worker: the worker's base
	// folder joined with the builder's folder, as the worker's system
	// writes paths. Command paths are joined under it.
	BuilderDir string
	// System is the worker's os.name, as get_worker_info reports it:
	// "posix" or "nt". Anything but "nt" gets posix path rules, as
	// Buildbot's master does.
	System string
	// Environ is the worker's environment, as get_worker_info reports it.
	// A leading "~" in a transfer's worker-side path expands to its HOME
	// (USERPROFILE, or HOMEDRIVE and HOMEPATH, on "nt").
	Environ map[string]string
}

// TranslateArgs turns a command written by a build step (master-side name,
// paths relative to the builder's folder) into the command a worker
// receives: the wire name and arguments with absolute paths. It follows
// Buildbot 3.7's Connection.remoteStartCommand for msgpack workers:
//
//	shell            workdir = join(builder, workdir)
//	mkdir, rmdir     paths = [join(builder, d) for d in dir] ("dir" is a string or a list)
//	cpdir            from_path, to_path = join(builder, fromdir), join(builder, todir)
//	stat             path = join(builder, workdir or "", file)
//	glob, rmfile     path = join(builder, path)
//	listdir          path = join(builder, dir)
//	uploadFile       upload_file, path = join(builder, workdir, expanduser(workersrc))
//	uploadDirectory  upload_directory, path = join(builder, workdir, expanduser(workersrc))
//	downloadFile     download_file, path = join(builder, workdir, expanduser(workerdest))
//
// The arguments replaced ("dir", "fromdir", "todir", "file") are removed;
// the others are kept, as Buildbot keeps them. "want_stdout" and
// "want_stderr" become booleans, and the master-only "reader" and "writer"
// are dropped. Any other command passes through unchanged. args is not
// modified.
//
// An error means an argument that the command needs is missing or has the
// wrong type; Buildbot's master fails the step in that case.
func TranslateArgs(name string, args map[string]any, t Target) (string, map[string]any, error) {
	out := maps.Clone(args)
	if out == nil {
		out = map[string]any{}
	}
	tr := translator{t: t, name: name, args: out}
	switch name {
	case CmdMkdir, CmdRmdir:
		dirs, err := tr.strings("dir")
		if err != nil {
			return "", nil, err
		}
		paths := make([]string, len(dirs))
		for i, d := range dirs {
			paths[i] = tr.join(d)
		}
		out["paths"] = paths
		delete(out, "dir")
	case CmdCpdir:
		from, err := tr.string("fromdir")
		if err != nil {
			return "", nil, err
		}
		to, err := tr.string("todir")
		if err != nil {
			return "", nil, err
		}
		out["from_path"] = tr.join(from)
		out["to_path"] = tr.join(to)
		delete(out, "fromdir")
		delete(out, "todir")
	case CmdStat:
		workdir, err := tr.optString("workdir")
		if err != nil {
			return "", nil, err
		}
		file, err := tr.string("file")
		if err != nil {
			return "", nil, err
		}
		out["path"] = tr.join(workdir, file)
		delete(out, "file")
	case CmdGlob, CmdRmfile:
		p, err := tr.string("path")
		if err != nil {
			return "", nil, err
		}
		out["path"] = tr.join(p)
	case CmdListdir:
		d, err := tr.string("dir")
		if err != nil {
			return "", nil, err
		}
		out["path"] = tr.join(d)
		delete(out, "dir")
	case CmdShell:
		workdir, err := tr.string("workdir")
		if err != nil {
			return "", nil, err
		}
		out["workdir"] = tr.join(workdir)
	case CmdMasterUploadFile, CmdMasterUploadDirectory, CmdMasterDownloadFile:
		key := "workersrc"
		switch name {
		case CmdMasterUploadFile:
			name = CmdUploadFile
		case CmdMasterUploadDirectory:
			name = CmdUploadDirectory
		default:
			name = CmdDownloadFile
			key = "workerdest"
		}
		workdir, err := tr.string("workdir")
		if err != nil {
			return "", nil, err
		}
		p, err := tr.string(key)
		if err != nil {
			return "", nil, err
		}
		out["path"] = tr.join(workdir, ExpandUser(t.System, p, t.Environ))
	}
	for _, key := range []string{"want_stdout", "want_stderr"} {
		if v, ok := out[key]; ok {
			out[key] = isOne(v)
		}
	}
	delete(out, "reader")
	delete(out, "writer")
	return name, out, nil
}

// isOne reports whether v == 1 in Python's sense (True == 1 there).
func isOne(v any) bool {
	switch x := v.(type) {
	case bool:
		return x
	case int:
		return x == 1
	case int8:
		return x == 1
	case int16:
		return x == 1
	case int32:
		return x == 1
	case int64:
		return x == 1
	case uint:
		return x == 1
	case uint8:
		return x == 1
	case uint16:
		return x == 1
	case uint32:
		return x == 1
	case uint64:
		return x == 1
	case float32:
		return x == 1
	case float64:
		return x == 1
	}
	return false
}

type translator struct {
	t    Target
	name string
	args map[string]any
}

func (tr translator) join(elem ...string) string {
	return JoinPath(tr.t.System, append([]string{tr.t.BuilderDir}, elem...)...)
}

func (tr translator) string(key string) (string, error) {
	v, ok := tr.args[key]
	if !ok {
		return "", fmt.Errorf("%s: missing argument %q", tr.name, key)
	}
	s, ok := v.(string)
	if !ok {
		return "", fmt.Errorf("%s: argument %q is %T, want a string", tr.name, key, v)
	}
	return s, nil
}

// optString returns the string at key, or "" when it is absent or nil.
func (tr translator) optString(key string) (string, error) {
	if v, ok := tr.args[key]; !ok || v == nil {
		return "", nil
	}
	return tr.string(key)
}

// strings returns the string or list of strings at key.
func (tr translator) strings(key string) ([]string, error) {
	v, ok := tr.args[key]
	if !ok {
		return nil, fmt.Errorf("%s: missing argument %q", tr.name, key)
	}
	switch x := v.(type) {
	case string:
		return []string{x}, nil
	case []string:
		return x, nil
	case []any:
		out := make([]string, len(x))
		for i, e := range x {
			s, ok := e.(string)
			if !ok {
				return nil, fmt.Errorf("%s: argument %q[%d] is %T, want a string", tr.name, key, i, e)
			}
			out[i] = s
		}
		return out, nil
	}
	return nil, fmt.Errorf("%s: argument %q is %T, want a string or a list of strings", tr.name, key, v)
}

// JoinPath joins path elements as Python's os.path.join does on the given
// system ("nt" for Windows rules, anything else for posix): an absolute
// element discards what came before it, and nothing is cleaned ("a/../b"
// stays as it is). This is how Buildbot's master builds worker paths.
func JoinPath(system string, elem ...string) string {
	if system == "nt" {
		return ntJoin(elem)
	}
	var b strings.Builder
	for i, e := range elem {
		switch {
		case i == 0:
			b.Reset()
			b.WriteString(e)
		case strings.HasPrefix(e, "/"):
			b.Reset()
			b.WriteString(e)
		case b.Len() == 0 || strings.HasSuffix(b.String(), "/"):
			b.WriteString(e)
		default:
			b.WriteByte('/')
			b.WriteString(e)
		}
	}
	return b.String()
}

// ntJoin is Python's ntpath.join.
func ntJoin(elem []string) string {
	if len(elem) == 0 {
		return ""
	}
	isSep := func(c byte) bool { return c == '\\' || c == '/' }
	drive, path := ntSplitDrive(elem[0])
	for _, p := range elem[1:] {
		pDrive, pPath := ntSplitDrive(p)
		if pPath != "" && isSep(pPath[0]) {
			// An absolute path replaces what came before, keeping the
			// drive unless it names one.
			if pDrive != "" || drive == "" {
				drive = pDrive
			}
			path = pPath
			continue
		}
		if pDrive != "" && pDrive != drive {
			if !strings.EqualFold(pDrive, drive) {
				// Another drive: start over from it.
				drive, path = pDrive, pPath
				continue
			}
			drive = pDrive
		}
		if path != "" && !isSep(path[len(path)-1]) {
			path += `\`
		}
		path += pPath
	}
	// A UNC drive and a relative path need a separator between them.
	if path != "" && !isSep(path[0]) && drive != "" && !strings.HasSuffix(drive, ":") {
		return drive + `\` + path
	}
	return drive + path
}

// ntSplitDrive is Python's ntpath.splitdrive: "C:" or a UNC
// "\\server\share" prefix, and the rest.
func ntSplitDrive(p string) (string, string) {
	if len(p) < 2 {
		return "", p
	}
	norm := strings.ReplaceAll(p, "/", `\`)
	if strings.HasPrefix(norm, `\\`) {
		start := 2
		if len(norm) >= 8 && strings.EqualFold(norm[:8], `\\?\UNC\`) {
			start = 8
		}
		i := strings.IndexByte(norm[start:], '\\')
		if i < 0 {
			return p, ""
		}
		i += start
		j := strings.IndexByte(norm[i+1:], '\\')
		if j < 0 {
			return p, ""
		}
		j += i + 1
		return p[:j], p[j:]
	}
	if norm[1] == ':' {
		return p[:2], p[2:]
	}
	return "", p
}

// ExpandUser expands a leading "~" in a worker-side path from the worker's
// environment, as Buildbot's master does for transfer paths: "~" and "~/x"
// use HOME on posix; on "nt", "~" and "~user" use USERPROFILE (or HOMEDRIVE
// and HOMEPATH). Paths it cannot expand are returned unchanged: in
// particular posix "~user", which Buildbot looks up in the master's own
// user database, a meaningless answer for a remote worker.
func ExpandUser(system, path string, environ map[string]string) string {
	if !strings.HasPrefix(path, "~") {
		return path
	}
	if system == "nt" {
		return ntExpandUser(path, environ)
	}
	i := strings.IndexByte(path[1:], '/')
	if i < 0 {
		i = len(path)
	} else {
		i++
	}
	if i != 1 {
		return path // ~user
	}
	home, ok := environ["HOME"]
	if !ok {
		return path
	}
	home = strings.TrimRight(home, "/")
	if home+path[i:] == "" {
		return "/"
	}
	return home + path[i:]
}

func ntExpandUser(path string, environ map[string]string) string {
	i := 1
	for i < len(path) && path[i] != '\\' && path[i] != '/' {
		i++
	}
	home, ok := environ["USERPROFILE"]
	if !ok {
		homePath, ok := environ["HOMEPATH"]
		if !ok {
			return path
		}
		home = ntJoin([]string{environ["HOMEDRIVE"], homePath})
	}
	if i != 1 { // ~user
		target := path[1:i]
		current := environ["USERNAME"]
		if target != current {
			// Guess that profiles are siblings, if the home folder
			// looks like a profile folder.
			dir, base := ntSplitLast(home)
			if current != base {
				return path
			}
			home = ntJoin([]string{dir, target})
		}
	}
	return home + path[i:]
}

// ntSplitLast splits an nt path into its folder and its last element, as
// ntpath.dirname and ntpath.basename do.
func ntSplitLast(p string) (string, string) {
	drive, rest := ntSplitDrive(p)
	i := len(rest)
	for i > 0 && rest[i-1] != '\\' && rest[i-1] != '/' {
		i--
	}
	head, tail := rest[:i], rest[i:]
	trimmed := strings.TrimRight(head, `\/`)
	if trimmed != "" {
		head = trimmed
	}
	return drive + head, tail
}
