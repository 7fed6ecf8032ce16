// Package pgtest gives the tests of a package a private PostgreSQL server
// and each test a fresh database on it, so that stores on PostgreSQL are
// tested on the real thing without touching any server of the machine.
//
// The test binary starts the server once, on first use: initdb in a
// temporary folder, the server on a free loopback port with its Unix
// socket in that folder, and stops it when the tests end (TestMain calls
// [Main]). Each test gets a new database, created from template0 and
// dropped when the test ends; a [Template] gives each test a copy of a
// database prepared once:
//
//	func TestMain(m *testing.M) { pgtest.Main(m) }
//
//	func TestStore(t *testing.T) {
//		url := pgtest.NewDatabase(t)
//		...
//	}
//
// The server's programs (initdb, pg_ctl) are looked for in $KILN_PG_BIN,
// then on $PATH, then in Debian's /usr/lib/postgresql/<version>/bin. When
// they are missing the tests skip, or fail under CI (CI=true), as
// internal/testenv does for other tools.
//
// A test binary killed before its end (a test timeout's panic) cannot stop
// its server: the next one to start a server stops it and removes its
// folder.
//
// PostgreSQL refuses to run as root: when the tests do, the server's
// folder is given to the "postgres" system user and its programs run as
// that user.
//
// The server trades durability for speed (fsync and synchronous_commit
// off: a crash of the machine may lose it, which a test server can), and
// autovacuum is off so that what a test measures of the tables' space
// stays as the test left it. Set KILN_PGTEST_DURABLE=1 to keep
// PostgreSQL's durable defaults, for benchmarks that compare with another
// store.
package pgtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/kilnci/kiln/internal/testenv"
)

// Password is the password of the server's superuser "postgres". The
// server trusts every local connection, so it is never checked; URLs
// carry it so that tests can make sure it is never shown.
const Password = "pgtest-secret-Zq8"

// startTimeout bounds initdb and the server's start on a loaded machine.
const startTimeout = 2 * time.Minute

var (
	once    sync.Once
	cluster *server
	errMiss error // the programs are missing
	errBoot error // they failed
	dbSeq   atomic.Int64
)

// A server is the running private server.
type server struct {
	dir   string // the temporary folder: data/, the socket, the log
	bin   string // the folder of initdb and pg_ctl
	port  int
	cred  *syscall.Credential // nil when not running as root
	mu    sync.Mutex
	admin *pgx.Conn // to the "postgres" database, for CREATE DATABASE
}

// Main runs the tests and then stops the server, if a test started it.
// Call it from TestMain; it does not return.
func Main(m *testing.M) { os.Exit(Run(m)) }

// Run runs the tests, stops the server if a test started it, and returns
// the exit code, for a TestMain that has more to do before it exits.
func Run(m *testing.M) int {
	code := m.Run()
	if cluster != nil {
		if err := cluster.stop(); err != nil {
			fmt.Fprintln(os.Stderr, "pgtest:", err)
			if code == 0 {
				code = 1
			}
		}
	}
	return code
}

// NewDatabase returns the URL of a new, empty database on the package's
// server (started on first use), dropped when the test ends. The URL
// names the superuser "postgres" with [Password], and the server's
// loopback address.
func NewDatabase(tb testing.TB) string {
	tb.Helper()
	return newDatabase(tb, "template0")
}

// A Template is a database prepared once per test binary (a schema
// migrated, say) and copied for each test that asks, which is faster than
// preparing a database for each test. The zero Template is an empty
// database.
type Template struct {
	// Prepare fills the template database at url. It must close its
	// connections before it returns: a database is copied only when no
	// one is connected to it.
	Prepare func(ctx context.Context, url string) error

	once sync.Once
	name string
	err  error
}

// NewDatabase returns the URL of a new database, a copy of the template,
// dropped when the test ends.
func (tp *Template) NewDatabase(tb testing.TB) string {
	tb.Helper()
	need(tb)
	tp.once.Do(func() {
		tp.name = fmt.Sprintf("template%d_%d", os.Getpid(), dbSeq.Add(1))
		ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
		defer cancel()
		if tp.err = cluster.exec(ctx, "CREATE DATABASE "+tp.name+" TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C'"); tp.err != nil {
			return
		}
		if tp.Prepare != nil {
			tp.err = tp.Prepare(ctx, cluster.url(tp.name))
		}
	})
	if tp.err != nil {
		tb.Fatalf("pgtest: prepare template: %v", tp.err)
	}
	return newDatabase(tb, tp.name)
}

// need starts the server on first use, and skips or fails the test when
// it cannot.
func need(tb testing.TB) {
	tb.Helper()
	once.Do(func() { cluster, errMiss, errBoot = start() })
	if errMiss != nil {
		if testenv.CI() {
			tb.Fatalf("PostgreSQL is required under CI but is not installed: %v", errMiss)
		}
		tb.Skipf("PostgreSQL is not installed: %v", errMiss)
	}
	if errBoot != nil {
		tb.Fatalf("pgtest: %v", errBoot)
	}
}

func newDatabase(tb testing.TB, template string) string {
	tb.Helper()
	need(tb)
	name := fmt.Sprintf("test%d_%d", os.Getpid(), dbSeq.Add(1))
	create := "CREATE DATABASE " + name + " TEMPLATE " + template
	var err error
	for try := 0; ; try++ {
		err = cluster.exec(tb.Context(), create)
		// A template's last connection may not be gone yet on the
		// server's side ("being accessed by other users").
		var pgErr *pgconn.PgError
		if err == nil || !errors.As(err, &pgErr) || pgErr.Code != "55006" || try == 50 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		tb.Fatalf("pgtest: create database: %v", err)
	}
	tb.Cleanup(func() {
		// WITH (FORCE) closes connections a test left open.
		if err := cluster.exec(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			tb.Errorf("pgtest: drop database: %v", err)
		}
	})
	return cluster.url(name)
}

// url returns the URL of database name, over TCP on the loopback
// interface.
func (s *server) url(name string) string {
	u := url.URL{
		Scheme: "postgres",
		User:   url.UserPassword("postgres", Password),
		Host:   net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)),
		Path:   "/" + name,
	}
	return u.String() + "?sslmode=disable"
}

func (s *server) exec(ctx context.Context, sql string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, err := s.admin.Exec(ctx, sql)
	return err
}

// findBin returns the folder holding initdb and pg_ctl.
func findBin() (string, error) {
	if dir := os.Getenv("KILN_PG_BIN"); dir != "" {
		return dir, nil
	}
	if p, err := exec.LookPath("pg_ctl"); err == nil {
		return filepath.Dir(p), nil
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	// The newest version first.
	sort.Slice(dirs, func(i, j int) bool {
		vi, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[i])))
		vj, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[j])))
		return vi > vj
	})
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "pg_ctl")); err == nil {
			return d, nil
		}
	}
	return "", errors.New("no pg_ctl on $PATH or in /usr/lib/postgresql/*/bin (set KILN_PG_BIN)")
}

// start makes and starts the server. It returns errMiss when PostgreSQL
// is not installed, errBoot when it failed to start.
func start() (s *server, errMiss, errBoot error) {
	bin, err := findBin()
	if err != nil {
		return nil, err, nil
	}
	for _, prog := range []string{"initdb", "pg_ctl", "postgres"} {
		if _, err := os.Stat(filepath.Join(bin, prog)); err != nil {
			return nil, err, nil
		}
	}
	reapOrphans(bin)
	s = &server{bin: bin}
	if err := s.boot(); err != nil {
		s.stop()
		return nil, nil, err
	}
	return s, nil, nil
}

func (s *server) boot() error {
	var err error
	// A short folder name: the socket's path must fit in 107 bytes.
	if s.dir, err = os.MkdirTemp("", "kiln-pg"); err != nil {
		return err
	}
	// The test binary owning the server, for reapOrphans.
	if err := os.WriteFile(filepath.Join(s.dir, ownerFile), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		return err
	}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return fmt.Errorf("running as root, the server needs the postgres system user: %w", err)
		}
		uid, _ := strconv.ParseUint(u.Uid, 10, 32)
		gid, _ := strconv.ParseUint(u.Gid, 10, 32)
		s.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(s.dir, int(uid), int(gid)); err != nil {
			return err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	data := filepath.Join(s.dir, "data")
	if err := s.run(ctx, "initdb", "-D", data, "-U", "postgres", "--auth=trust", "--encoding=UTF8",
		"--locale=C", "--no-sync"); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	s.port = ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	opts := []string{
		"-c listen_addresses=127.0.0.1",
		"-c port=" + strconv.Itoa(s.port),
		"-c unix_socket_directories=" + s.dir,
		"-c max_connections=200",
		"-c autovacuum=off",
	}
	if os.Getenv("KILN_PGTEST_DURABLE") == "" {
		opts = append(opts, "-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off")
	}
	if err := s.run(ctx, "pg_ctl", "start", "-w", "-t", strconv.Itoa(int(startTimeout.Seconds())),
		"-D", data, "-l", filepath.Join(s.dir, "server.log"), "-o", strings.Join(opts, " ")); err != nil {
		log, _ := os.ReadFile(filepath.Join(s.dir, "server.log"))
		return fmt.Errorf("%w\nserver log:\n%s", err, log)
	}
	s.admin, err = pgx.Connect(ctx, s.url("postgres"))
	return err
}

// run runs one of the server's programs, as the postgres user when the
// tests run as root.
func (s *server) run(ctx context.Context, prog string, args ...string) error {
	cmd := exec.CommandContext(ctx, filepath.Join(s.bin, prog), args...)
	cmd.Dir = s.dir
	if s.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w\n%s", prog, err, out)
	}
	return nil
}

// stop stops the server at once (the data is thrown away) and removes
// its folder.
func (s *server) stop() error {
	var errs []error
	if s.admin != nil {
		s.admin.Close(context.Background())
	}
	if s.dir == "" {
		return nil
	}
	data := filepath.Join(s.dir, "data")
	if _, err := os.Stat(filepath.Join(data, "postmaster.pid")); err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		errs = append(errs, s.run(ctx, "pg_ctl", "stop", "-D", data, "-m", "immediate", "-w"))
		cancel()
	}
	errs = append(errs, os.RemoveAll(s.dir))
	return errors.Join(errs...)
}

// ownerFile, in a server's folder, holds the process ID of the test binary
// that started it.
const ownerFile = "owner.pid"

// reapOrphans stops the servers, and removes the folders, that test
// binaries killed before they could stop them (a test timeout's panic, a
// kill) left behind.
func reapOrphans(bin string) {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), "kiln-pg*"))
	for _, dir := range dirs {
		b, err := os.ReadFile(filepath.Join(dir, ownerFile))
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || pid <= 0 || syscall.Kill(pid, 0) == nil || !errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) {
			continue // alive (or not ours to judge)
		}
		s := &server{dir: dir, bin: bin}
		if os.Geteuid() == 0 {
			if st, err := os.Stat(dir); err == nil {
				if sys, ok := st.Sys().(*syscall.Stat_t); ok {
					s.cred = &syscall.Credential{Uid: sys.Uid, Gid: sys.Gid}
				}
			}
		}
		s.stop()
	}
}
