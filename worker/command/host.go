package command

import (
	"bufio"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/kilnci/kiln/worker/protocol"
)

// What a worker says of its host. The network worker and the in-process
// worker both answer get_worker_info and both start commands from an
// environment; they take these from here so that the master sees the same
// thing from either.

// Environ returns the process environment as a map: the environment a
// worker gives its commands and reports when it is given none.
func Environ() map[string]string {
	env := map[string]string{}
	for _, kv := range os.Environ() {
		if k, v, ok := strings.Cut(kv, "="); ok {
			env[k] = v
		}
	}
	return env
}

// System returns the worker's os.name as Python names it: "nt" on
// Windows, "posix" elsewhere. The master builds paths for the worker by it.
func System() string {
	if runtime.GOOS == "windows" {
		return "nt"
	}
	return "posix"
}

// HostInfo is what WorkerInfo reports of a worker beside what it finds
// on the machine.
type HostInfo struct {
	// BaseDir is the worker's base folder, absolute; its "info" folder
	// holds the files whose contents are reported by name.
	BaseDir string
	// Admin and Host, when set, replace the admin and host files.
	Admin, Host string
	// Env is the worker's environment, reported as "environ".
	Env map[string]string
	// DeleteLeftoverDirs is reported as "delete_leftover_dirs".
	DeleteLeftoverDirs bool
	// OSRelease is the file the system describes itself in;
	// /etc/os-release if empty.
	OSRelease string
}

// WorkerInfo returns the answer to get_worker_info, as buildbot-worker
// makes it: every regular file of the info folder by name (following
// symbolic links, as Python's os.path.isfile does; Admin and Host, when
// set, replace the admin and host files), the os-release fields as
// os_<key>, then environ, system, basedir, numcpus, version,
// worker_commands and delete_leftover_dirs.
func WorkerInfo(h HostInfo) map[string]any {
	info := map[string]any{}
	dir := filepath.Join(h.BaseDir, "info")
	if entries, err := os.ReadDir(dir); err == nil {
		for _, e := range entries {
			p := filepath.Join(dir, e.Name())
			if fi, err := os.Stat(p); err != nil || !fi.Mode().IsRegular() {
				continue
			}
			if b, err := os.ReadFile(p); err == nil {
				info[e.Name()] = string(b)
			}
		}
	}
	if h.Admin != "" {
		info["admin"] = h.Admin
	}
	if h.Host != "" {
		info["host"] = h.Host
	}
	osRelease := h.OSRelease
	if osRelease == "" {
		osRelease = "/etc/os-release"
	}
	readOSRelease(osRelease, info)
	info["environ"] = h.Env
	info["system"] = System()
	info["basedir"] = h.BaseDir
	info["numcpus"] = runtime.NumCPU()
	info["version"] = protocol.Version
	info["worker_commands"] = protocol.WorkerCommands()
	info["delete_leftover_dirs"] = h.DeleteLeftoverDirs
	return info
}

// readOSRelease adds the fields of an os-release file to info as
// os_<lower-case key>, unquoted, as buildbot-worker does. A missing file
// adds nothing.
func readOSRelease(path string, info map[string]any) {
	f, err := os.Open(path)
	if err != nil {
		return
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r\n")
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if k, v, ok := strings.Cut(line, "="); ok && v != "" {
			info["os_"+strings.ToLower(k)] = strings.Trim(v, `"`)
		}
	}
}
