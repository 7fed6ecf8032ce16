package protocol_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kilnci/kiln/worker/protocol"
)

func TestTranslateArgs(t *testing.T) {
	posix := protocol.Target{
		BuilderDir: "/w/one",
		System:     "posix",
		Environ:    map[string]string{"HOME": "/home/kiln"},
	}
	nt := protocol.Target{
		BuilderDir: `C:\w\one`,
		System:     "nt",
		Environ:    map[string]string{"USERPROFILE": `C:\Users\kiln`},
	}
	tests := []struct {
		name     string
		target   protocol.Target
		cmd      string
		args     map[string]any
		wantCmd  string
		wantArgs map[string]any
	}{
		{
			name: "shell", target: posix, cmd: "shell",
			args:     map[string]any{"workdir": "build", "command": []any{"true"}, "want_stdout": 1, "want_stderr": 0},
			wantCmd:  "shell",
			wantArgs: map[string]any{"workdir": "/w/one/build", "command": []any{"true"}, "want_stdout": true, "want_stderr": false},
		},
		{
			name: "shell/bool want", target: posix, cmd: "shell",
			args:     map[string]any{"workdir": "build", "want_stdout": true, "want_stderr": false},
			wantCmd:  "shell",
			wantArgs: map[string]any{"workdir": "/w/one/build", "want_stdout": true, "want_stderr": false},
		},
		{
			name: "shell/absolute workdir", target: posix, cmd: "shell",
			args:     map[string]any{"workdir": "/tmp/x"},
			wantCmd:  "shell",
			wantArgs: map[string]any{"workdir": "/tmp/x"},
		},
		{
			name: "shell/not cleaned", target: posix, cmd: "shell",
			args:     map[string]any{"workdir": "../other"},
			wantCmd:  "shell",
			wantArgs: map[string]any{"workdir": "/w/one/../other"},
		},
		{
			name: "shell/nt", target: nt, cmd: "shell",
			args:     map[string]any{"workdir": "build"},
			wantCmd:  "shell",
			wantArgs: map[string]any{"workdir": `C:\w\one\build`},
		},
		{
			name: "mkdir/string", target: posix, cmd: "mkdir",
			args:     map[string]any{"dir": "build", "logEnviron": true},
			wantCmd:  "mkdir",
			wantArgs: map[string]any{"paths": []string{"/w/one/build"}, "logEnviron": true},
		},
		{
			name: "mkdir/list", target: posix, cmd: "mkdir",
			args:     map[string]any{"dir": []any{"a", "b/c"}},
			wantCmd:  "mkdir",
			wantArgs: map[string]any{"paths": []string{"/w/one/a", "/w/one/b/c"}},
		},
		{
			name: "rmdir/list of strings", target: posix, cmd: "rmdir",
			args:     map[string]any{"dir": []string{"build"}, "timeout": 120},
			wantCmd:  "rmdir",
			wantArgs: map[string]any{"paths": []string{"/w/one/build"}, "timeout": 120},
		},
		{
			name: "rmdir/nt", target: nt, cmd: "rmdir",
			args:     map[string]any{"dir": "build"},
			wantCmd:  "rmdir",
			wantArgs: map[string]any{"paths": []string{`C:\w\one\build`}},
		},
		{
			name: "cpdir", target: posix, cmd: "cpdir",
			args:     map[string]any{"fromdir": "source", "todir": "build"},
			wantCmd:  "cpdir",
			wantArgs: map[string]any{"from_path": "/w/one/source", "to_path": "/w/one/build"},
		},
		{
			name: "stat/no workdir", target: posix, cmd: "stat",
			args:     map[string]any{"file": "build/x"},
			wantCmd:  "stat",
			wantArgs: map[string]any{"path": "/w/one/build/x"},
		},
		{
			name: "stat/workdir", target: posix, cmd: "stat",
			args:     map[string]any{"file": "x", "workdir": "build"},
			wantCmd:  "stat",
			wantArgs: map[string]any{"path": "/w/one/build/x", "workdir": "build"},
		},
		{
			name: "glob", target: posix, cmd: "glob",
			args:     map[string]any{"path": "build/*.o"},
			wantCmd:  "glob",
			wantArgs: map[string]any{"path": "/w/one/build/*.o"},
		},
		{
			name: "listdir", target: posix, cmd: "listdir",
			args:     map[string]any{"dir": "build"},
			wantCmd:  "listdir",
			wantArgs: map[string]any{"path": "/w/one/build"},
		},
		{
			name: "rmfile", target: posix, cmd: "rmfile",
			args:     map[string]any{"path": "build/x"},
			wantCmd:  "rmfile",
			wantArgs: map[string]any{"path": "/w/one/build/x"},
		},
		{
			name: "uploadFile", target: posix, cmd: "uploadFile",
			args:    map[string]any{"workdir": "build", "workersrc": "out/a.txt", "maxsize": nil, "blocksize": 16384, "keepstamp": false, "writer": "master object"},
			wantCmd: "upload_file",
			wantArgs: map[string]any{"workdir": "build", "workersrc": "out/a.txt", "path": "/w/one/build/out/a.txt",
				"maxsize": nil, "blocksize": 16384, "keepstamp": false},
		},
		{
			name: "uploadFile/home", target: posix, cmd: "uploadFile",
			args:     map[string]any{"workdir": "build", "workersrc": "~/a.txt"},
			wantCmd:  "upload_file",
			wantArgs: map[string]any{"workdir": "build", "workersrc": "~/a.txt", "path": "/home/kiln/a.txt"},
		},
		{
			name: "uploadDirectory", target: posix, cmd: "uploadDirectory",
			args:     map[string]any{"workdir": "build", "workersrc": "docs", "compress": "gz"},
			wantCmd:  "upload_directory",
			wantArgs: map[string]any{"workdir": "build", "workersrc": "docs", "path": "/w/one/build/docs", "compress": "gz"},
		},
		{
			name: "downloadFile", target: posix, cmd: "downloadFile",
			args:     map[string]any{"workdir": "build", "workerdest": "conf/x.cfg", "mode": 0o644, "reader": "master object"},
			wantCmd:  "download_file",
			wantArgs: map[string]any{"workdir": "build", "workerdest": "conf/x.cfg", "path": "/w/one/build/conf/x.cfg", "mode": 0o644},
		},
		{
			name: "downloadFile/nt home", target: nt, cmd: "downloadFile",
			args:     map[string]any{"workdir": "build", "workerdest": `~\x.cfg`},
			wantCmd:  "download_file",
			wantArgs: map[string]any{"workdir": "build", "workerdest": `~\x.cfg`, "path": `C:\Users\kiln\x.cfg`},
		},
		{
			name: "unknown passes through", target: posix, cmd: "frobnicate",
			args:     map[string]any{"dir": "x"},
			wantCmd:  "frobnicate",
			wantArgs: map[string]any{"dir": "x"},
		},
		{
			name: "nil args", target: posix, cmd: "frobnicate",
			wantCmd:  "frobnicate",
			wantArgs: map[string]any{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var before map[string]any
			if tt.args != nil {
				before = map[string]any{}
				for k, v := range tt.args {
					before[k] = v
				}
			}
			cmd, args, err := protocol.TranslateArgs(tt.cmd, tt.args, tt.target)
			require.NoError(t, err)
			assert.Equal(t, tt.wantCmd, cmd)
			assert.Equal(t, tt.wantArgs, args)
			if tt.args != nil {
				assert.Equal(t, before, tt.args, "input args modified")
			}
		})
	}
}

func TestTranslateArgs_Errors(t *testing.T) {
	target := protocol.Target{BuilderDir: "/w/one", System: "posix"}
	tests := []struct {
		name string
		cmd  string
		args map[string]any
		want string
	}{
		{"shell/no workdir", "shell", map[string]any{"command": "true"}, `shell: missing argument "workdir"`},
		{"shell/workdir type", "shell", map[string]any{"workdir": 3}, `shell: argument "workdir" is int, want a string`},
		{"mkdir/no dir", "mkdir", map[string]any{}, `mkdir: missing argument "dir"`},
		{"mkdir/bad list", "mkdir", map[string]any{"dir": []any{"a", 1}}, `mkdir: argument "dir"[1] is int, want a string`},
		{"cpdir/no todir", "cpdir", map[string]any{"fromdir": "a"}, `cpdir: missing argument "todir"`},
		{"stat/no file", "stat", map[string]any{}, `stat: missing argument "file"`},
		{"uploadFile/no workersrc", "uploadFile", map[string]any{"workdir": "build"}, `uploadFile: missing argument "workersrc"`},
		{"downloadFile/no workdir", "downloadFile", map[string]any{"workerdest": "x"}, `downloadFile: missing argument "workdir"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := protocol.TranslateArgs(tt.cmd, tt.args, target)
			require.EqualError(t, err, tt.want)
		})
	}
}

// The expected values come from Python 3.11's posixpath.join and
// ntpath.join.
func TestJoinPath(t *testing.T) {
	tests := []struct {
		system string
		elem   []string
		want   string
	}{
		{"posix", []string{"/b/one", ""}, "/b/one/"},
		{"posix", []string{"/b/one", "", "x"}, "/b/one/x"},
		{"posix", []string{"/b/one", "build", "/abs/x"}, "/abs/x"},
		{"posix", []string{"/b/one/", "build"}, "/b/one/build"},
		{"posix", []string{"/b/one", "../x"}, "/b/one/../x"},
		{"", []string{"/b", "x"}, "/b/x"},
		{"nt", []string{`C:\w\one`, "build", "f.txt"}, `C:\w\one\build\f.txt`},
		{"nt", []string{`C:\w\one`, "D:x"}, "D:x"},
		{"nt", []string{`C:\w\one`, `\abs`}, `C:\abs`},
		{"nt", []string{`\\srv\share`, "x"}, `\\srv\share\x`},
		{"nt", []string{`\\srv\share\w`, `x\y`}, `\\srv\share\w\x\y`},
		{"nt", []string{`C:\w`, "c:y"}, `c:\w\y`},
		{"nt", []string{`C:\w\`, "build"}, `C:\w\build`},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, protocol.JoinPath(tt.system, tt.elem...), "%s %q", tt.system, tt.elem)
	}
}

// The expected values come from Buildbot 3.7's buildbot.util.path_expand_user.
func TestExpandUser(t *testing.T) {
	tests := []struct {
		system  string
		path    string
		environ map[string]string
		want    string
	}{
		{"posix", "~/x", map[string]string{"HOME": "/home/u/"}, "/home/u/x"},
		{"posix", "~", map[string]string{"HOME": "/"}, "/"},
		{"posix", "~", map[string]string{"HOME": "/home/u"}, "/home/u"},
		{"posix", "~/x", map[string]string{}, "~/x"},
		{"posix", "~bob/x", map[string]string{"HOME": "/home/u"}, "~bob/x"},
		{"posix", "a/~", map[string]string{"HOME": "/home/u"}, "a/~"},
		{"nt", `~\x`, map[string]string{"USERPROFILE": `C:\Users\me`}, `C:\Users\me\x`},
		{"nt", `~bob\x`, map[string]string{"USERPROFILE": `C:\Users\me`, "USERNAME": "me"}, `C:\Users\bob\x`},
		{"nt", `~bob\x`, map[string]string{"USERPROFILE": `C:\Profiles\other`, "USERNAME": "me"}, `~bob\x`},
		{"nt", `~\x`, map[string]string{"HOMEDRIVE": "D:", "HOMEPATH": `\Users\h`}, `D:\Users\h\x`},
		{"nt", `~\x`, map[string]string{}, `~\x`},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, protocol.ExpandUser(tt.system, tt.path, tt.environ), "%s %q", tt.system, tt.path)
	}
}

func TestWorkerCommands(t *testing.T) {
	cmds := protocol.WorkerCommands()
	// buildbot-worker 3.7 reports these 14 names.
	assert.Len(t, cmds, 14)
	for _, name := range []string{"shell", "uploadFile", "upload_file", "uploadDirectory", "upload_directory",
		"downloadFile", "download_file", "mkdir", "rmdir", "cpdir", "stat", "glob", "listdir", "rmfile"} {
		assert.Equal(t, "3.1", cmds[name], name)
	}
}
