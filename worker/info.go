package worker

import (
	"bufio"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/kilnci/kiln/worker/protocol"
)

// osReleaseFile is where the system describes itself.
var osReleaseFile = "/etc/os-release"

// system is the worker's os.name, as Python names it.
func system() string {
	if runtime.GOOS == "windows" {
		return "nt"
	}
	return "posix"
}

// workerInfo is the result of get_worker_info, as buildbot-worker makes
// it: every file of the info folder by name (Admin and Host, when set,
// replace the admin and host files), the os-release fields as os_<key>,
// then environ, system, basedir, numcpus, version, worker_commands and
// delete_leftover_dirs.
func workerInfo(a *agent) map[string]any {
	info := map[string]any{}
	dir := filepath.Join(a.baseDir, "info")
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
	if a.w.Admin != "" {
		info["admin"] = a.w.Admin
	}
	if a.w.Host != "" {
		info["host"] = a.w.Host
	}
	readOSRelease(osReleaseFile, info)
	info["environ"] = a.env
	info["system"] = system()
	info["basedir"] = a.baseDir
	info["numcpus"] = runtime.NumCPU()
	info["version"] = protocol.Version
	info["worker_commands"] = protocol.WorkerCommands()
	info["delete_leftover_dirs"] = a.w.DeleteLeftoverDirs
	return info
}

// readOSRelease adds the fields of an os-release file to info as
// os_<lower-case key>, unquoted, as buildbot-worker does.
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
