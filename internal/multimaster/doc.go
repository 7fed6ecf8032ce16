// Package multimaster tests several Kiln masters sharing one PostgreSQL
// database, as whole processes: three masters (internal/cmd/clustermaster)
// on a private PostgreSQL server (internal/pgtest), six workers attached
// to them, four kiln-worker and two of Debian's buildbot-worker, and a
// load of build requests sent through the masters' force API and GitHub
// hooks while one master is killed. The test then reads the database:
// every request built exactly once, none lost, the killed master's
// builds retried elsewhere, the periodic scheduler fired once per
// period, and a log followed on one master while another runs its build.
// It logs the figures of the run: builds per second, the database's
// transactions and rows per build, the time from the kill to the retried
// builds' ends.
//
// Under -short it sends 150 requests instead of 1,000. Without PostgreSQL
// or buildbot-worker it skips, but fails under CI (CI=true).
package multimaster
