// Package report has Kiln's reporters, which tell the outside world about
// builds (ci.Reporter): a commit status on GitHub (GitHubStatus), a line
// on IRC (IRC), an e-mail (Mail), a JSON document posted to a URL
// (HTTPPush).
//
//	cfg.Reporters = []ci.Reporter{
//		&report.GitHubStatus{Token: os.Getenv("GITHUB_TOKEN")},
//		&report.Mail{Addr: "localhost:25", From: "ci@example.org", To: []string{"dev@example.org"}},
//	}
//
// The master calls each reporter from a goroutine of its own, one report
// at a time, so a reporter needs no locking for its own sake and never
// delays builds. A reporter that cannot deliver a report (a server down, an
// answer other than success) returns an error, and the master tries the
// same report again with growing delays before giving up on it; a report
// that is not wanted (a mail mode that skips successes) returns nil.
// Errors and logs never carry tokens or passwords.
//
// Each reporter has a Validate method, which the master calls when it
// starts, and each is configured by its exported fields, which must not
// change once the master runs.
//
// IRC keeps a connection: it is also a ci.Service, to be listed in
// MasterConfig.Services as well as in Reporters.
package report
