package protocol

// The commands a worker runs, by the name start_command gives them on the
// wire.
const (
	CmdShell           = "shell"
	CmdUploadFile      = "upload_file"
	CmdUploadDirectory = "upload_directory"
	CmdDownloadFile    = "download_file"
	CmdMkdir           = "mkdir"
	CmdRmdir           = "rmdir"
	CmdCpdir           = "cpdir"
	CmdStat            = "stat"
	CmdGlob            = "glob"
	CmdListdir         = "listdir"
	CmdRmfile          = "rmfile"
)

// The master-side names of the transfer commands: build steps use them, and
// TranslateArgs turns them into CmdUploadFile, CmdUploadDirectory and
// CmdDownloadFile. A stock worker accepts both spellings.
const (
	CmdMasterUploadFile      = "uploadFile"
	CmdMasterUploadDirectory = "uploadDirectory"
	CmdMasterDownloadFile    = "downloadFile"
)

// CommandVersion is the version the worker reports for each of its
// commands in get_worker_info's "worker_commands": buildbot-worker 3.7's
// command_version. Masters compare it to decide which arguments a worker
// understands ("workersrc" rather than "slavesrc" from 3.0 on).
const CommandVersion = "3.1"

// Version is the worker version Kiln reports in get_worker_info.
const Version = "kiln-0.1"

// Commands returns the names of all the commands a worker runs, wire names
// and master-side aliases alike, as buildbot-worker lists them.
func Commands() []string {
	return []string{
		CmdShell,
		CmdMasterUploadFile, CmdUploadFile,
		CmdMasterUploadDirectory, CmdUploadDirectory,
		CmdMasterDownloadFile, CmdDownloadFile,
		CmdMkdir, CmdRmdir, CmdCpdir, CmdStat, CmdGlob, CmdListdir, CmdRmfile,
	}
}

// WorkerCommands returns the "worker_commands" value of get_worker_info:
// every command name mapped to CommandVersion.
func WorkerCommands() map[string]string {
	m := make(map[string]string, 14)
	for _, name := range Commands() {
		m[name] = CommandVersion
	}
	return m
}
