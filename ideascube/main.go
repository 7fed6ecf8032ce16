// Command ideascube is the Ideascube project's CI master, built on Kiln:
// the equivalent of the Buildbot master.cfg of its deployment guide. When a
// tag is created on GitHub (or GitLab), it builds the Debian package of
// that tag for amd64, armhf and i386 with sbuild on the project's workers,
// checks it with lintian, uploads it with dput, and publishes it in the
// APT archive the master keeps and serves at /debian; an admin can force
// builds from the web page.
//
//	ideascube -basedir /srv/buildbot/master [-http 127.0.0.1:8010] [-workers :9989]
//	          [-worker-cert FILE -worker-key FILE] [-metrics 127.0.0.1:9101]
//	          [-url https://buildbot.ideascube.org/] [-repo URL] [-dist jessie]
//	          [-extra-repository LINE] [-resolver aptitude] [-cross armhf,i386]
//	          [-unshare [-tarballs DIR]] [-archive-key FILE | -archive-unsigned]
//	          [-drain 10m]
//	ideascube -basedir /srv/buildbot/master -backup FILE
//	ideascube -hash-password < password
//
// By default the workers build in sbuild's schroot chroots DIST-ARCH-sbuild,
// refreshed first with sudo sbuild-update; -unshare switches them to
// sbuild's unshare mode with chroot tarballs. -cross names architectures
// built on the amd64 worker in its amd64 chroot (sbuild --host), for
// machines that cannot run them natively.
//
// -backup writes a consistent copy of the database while the master runs;
// -hash-password asks for a password twice on the terminal, without
// showing it (or reads the first line of its standard input), and prints
// its bcrypt hash, for IDEASCUBE_ADMIN_PASSWORD or a worker's password.
//
// Secrets come from the environment or from BASEDIR/secrets.env (KEY=VALUE
// lines; the environment wins), never from the source:
//
//	IDEASCUBE_WORKER_AMD64_PASSWORD  worker-amd64's password (or its bcrypt hash);
//	                                 IDEASCUBE_<NAME>_PASSWORD for each worker
//	IDEASCUBE_WORKER_ARMHF_PASSWORD  worker-armhf's password (or its bcrypt hash)
//	IDEASCUBE_ADMIN_USER             the web admin's login
//	IDEASCUBE_ADMIN_PASSWORD         the web admin's password, plain or a bcrypt hash
//	IDEASCUBE_GITHUB_SECRET          the GitHub webhook's secret
//	IDEASCUBE_GITLAB_SECRET          the GitLab webhook's token
//	IDEASCUBE_IRC_SERVER             optional: host:port of the IRC server for #ideascube
//	IDEASCUBE_IRC_NICK               optional: the bot's nick (ideascube-ci)
//	IDEASCUBE_DATABASE_URL           optional: postgres://user:password@host/db, the
//	                                 PostgreSQL database to keep the master's records in
//	                                 instead of BASEDIR/state.sqlite
//
// The archive's signing key, an ASCII-armoured OpenPGP secret key without
// a passphrase, is read from BASEDIR/archive-key.asc (or -archive-key),
// which only its owner may read.
//
// A missing secret stops the start with a message naming it. SIGTERM or
// SIGINT stop the master gracefully: running builds get the -drain time to
// finish, then end as RETRY and are built again at the next start.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/crypto/bcrypt"
	"golang.org/x/term"

	"github.com/kilnci/kiln/ci"
	_ "github.com/kilnci/kiln/ci/postgres" // for IDEASCUBE_DATABASE_URL
	"github.com/kilnci/kiln/ci/sqlite"
	"github.com/kilnci/kiln/worker/remote"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	switch {
	case errors.Is(err, flag.ErrHelp):
		// -h: the usage was asked for, and printed.
	case err != nil:
		fmt.Fprintln(os.Stderr, "ideascube:", err)
		os.Exit(1)
	}
}

// run parses the command line, reads the secrets, and runs the master until
// ctx ends.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("ideascube", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o := defaultOptions()
	fs.StringVar(&o.BaseDir, "basedir", o.BaseDir, "the master's folder: state.sqlite, secrets.env, uploads")
	fs.StringVar(&o.HTTPAddr, "http", o.HTTPAddr, "address of the web UI, API and change hooks (127.0.0.1:8010 when -url is set, as behind nginx; :8010 otherwise)")
	fs.StringVar(&o.WorkerAddr, "workers", o.WorkerAddr, "address where workers connect")
	fs.StringVar(&o.MetricsAddr, "metrics", o.MetricsAddr, "address where Prometheus reads /metrics (none if empty); not the web port, which is public")
	fs.StringVar(&o.WorkerCert, "worker-cert", o.WorkerCert, "PEM certificate of the worker port: workers then connect with TLS (wss://); reloaded when it changes, or on SIGHUP")
	fs.StringVar(&o.WorkerKey, "worker-key", o.WorkerKey, "PEM private key of -worker-cert")
	fs.StringVar(&o.PublicURL, "url", o.PublicURL, "the master's public web address (behind nginx)")
	fs.StringVar(&o.Repo, "repo", o.Repo, "the ideascube repository to build")
	fs.StringVar(&o.Dist, "dist", o.Dist, "the Debian distribution to build for")
	fs.StringVar(&o.ExtraRepository, "extra-repository", o.ExtraRepository, "the extra APT repository line given to sbuild")
	fs.StringVar(&o.Resolver, "resolver", o.Resolver, "sbuild's build-dep resolver: aptitude, apt...")
	cross := fs.String("cross", "", "architectures to cross-build (--host) in the "+buildArch+" chroot of their worker, comma-separated (armhf,i386)")
	fs.BoolVar(&o.Unshare, "unshare", o.Unshare, "build in sbuild's unshare mode, from chroot tarballs, instead of schroot chroots")
	fs.StringVar(&o.Tarballs, "tarballs", o.Tarballs, "in unshare mode, the workers' folder of chroot tarballs DIST-ARCH.tar.zst (sbuild's ~/.cache/sbuild if empty)")
	fs.StringVar(&o.ArchiveKey, "archive-key", o.ArchiveKey, "the archive's signing key, an armoured OpenPGP secret key file (BASEDIR/archive-key.asc if empty)")
	fs.BoolVar(&o.ArchiveUnsigned, "archive-unsigned", o.ArchiveUnsigned, "publish the archive unsigned: for tests only, apt then needs [trusted=yes]")
	fs.DurationVar(&o.Drain, "drain", o.Drain, "how long running builds may finish when the master stops")
	verbose := fs.Bool("v", false, "log debug messages")
	backup := fs.String("backup", "", "write a copy of the database to this file, and exit")
	hash := fs.Bool("hash-password", false, "print the bcrypt hash of the password read on standard input, and exit")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if (o.WorkerCert == "") != (o.WorkerKey == "") {
		return errors.New("-worker-cert and -worker-key go together")
	}
	if *cross != "" {
		for _, a := range strings.Split(*cross, ",") {
			if !knownArch(a) {
				return fmt.Errorf("-cross: %q is not one of the builders' architectures (amd64, armhf, i386)", a)
			}
			o.Cross = append(o.Cross, a)
		}
	}
	if *hash {
		if term.IsTerminal(int(os.Stdin.Fd())) {
			return hashTypedPassword(int(os.Stdin.Fd()), stdout, stderr)
		}
		return hashPassword(os.Stdin, stdout)
	}
	if o.BaseDir == "" {
		return errors.New("-basedir is required")
	}
	if *backup != "" {
		return backupDatabase(ctx, filepath.Join(o.BaseDir, "state.sqlite"), *backup)
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	secrets, err := loadSecrets(filepath.Join(o.BaseDir, "secrets.env"), os.LookupEnv)
	if err != nil {
		return err
	}
	if !o.ArchiveUnsigned {
		keyFile := o.ArchiveKey
		if keyFile == "" {
			keyFile = filepath.Join(o.BaseDir, "archive-key.asc")
		}
		if secrets[secretArchiveKey], err = loadArchiveKey(keyFile); err != nil {
			return err
		}
	}
	cfg, err := config(o, secrets)
	if err != nil {
		return err
	}
	cfg.Logger = logger
	m, err := ci.NewMaster(cfg)
	if err != nil {
		return err
	}
	if o.WorkerCert == "" {
		logger.Warn("the worker port is not encrypted: the workers' passwords cross the network in clear; give -worker-cert and -worker-key")
	} else {
		// SIGHUP: a renewed certificate, served from the next handshake.
		hup := make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
		defer func() {
			signal.Stop(hup)
			close(hup)
		}()
		go func() {
			for range hup {
				for _, s := range cfg.Services {
					if l, ok := s.(*remote.Listener); ok {
						l.Reload()
					}
				}
			}
		}()
	}
	logger.Info("ideascube master starting", "basedir", o.BaseDir, "http", o.HTTPAddr, "workers", o.WorkerAddr, "url", o.PublicURL, "repo", o.Repo)
	return m.Run(ctx)
}

// options are the command line's settings.
type options struct {
	BaseDir         string
	HTTPAddr        string
	WorkerAddr      string
	MetricsAddr     string
	WorkerCert      string
	WorkerKey       string
	PublicURL       string
	Repo            string
	Dist            string
	ExtraRepository string
	Resolver        string
	Cross           []string // architectures cross-built on the amd64 worker
	Unshare         bool
	Tarballs        string
	ArchiveKey      string
	ArchiveUnsigned bool
	Drain           time.Duration
}

// The defaults of the command line, from Ideascube's deployment.
func defaultOptions() options {
	return options{
		HTTPAddr:        "", // 127.0.0.1:8010 behind the public URL (webui.Server.ListenAddr)
		WorkerAddr:      remote.DefaultAddr,
		MetricsAddr:     "127.0.0.1:9101",
		PublicURL:       "https://buildbot.ideascube.org/",
		Repo:            "https://github.com/ideascube/ideascube.git",
		Dist:            "jessie",
		ExtraRepository: "deb http://archive.debian.org/debian jessie-backports main",
		Resolver:        "aptitude",
		Drain:           10 * time.Minute,
	}
}

// knownArch reports whether a is the architecture of a builder.
func knownArch(a string) bool {
	for _, x := range architectures {
		if x.arch == a {
			return true
		}
	}
	return false
}

// hashPassword prints the bcrypt hash of the first line read from in (a
// pipe or a file): it reads that line and no further.
func hashPassword(in io.Reader, out io.Writer) error {
	var line []byte
	b := make([]byte, 1)
	for len(line) < 4096 {
		n, err := in.Read(b)
		if n == 1 {
			if b[0] == '\n' {
				break
			}
			line = append(line, b[0])
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("read the password: %w", err)
		}
	}
	password := strings.TrimSuffix(string(line), "\r")
	if password == "" {
		return errors.New("no password on standard input")
	}
	return printHash(password, out)
}

// hashTypedPassword asks for the password twice on the terminal fd,
// without echoing it, and prints its bcrypt hash.
func hashTypedPassword(fd int, out, prompt io.Writer) error {
	return withoutEcho(fd, func() error { return askPassword(fd, out, prompt) })
}

func askPassword(fd int, out, prompt io.Writer) error {
	ask := func(what string) (string, error) {
		fmt.Fprint(prompt, what)
		b, err := term.ReadPassword(fd)
		fmt.Fprintln(prompt)
		if err != nil {
			return "", fmt.Errorf("read the password: %w", err)
		}
		return string(b), nil
	}
	password, err := ask("Password: ")
	if err != nil {
		return err
	}
	if password == "" {
		return errors.New("the password is empty")
	}
	again, err := ask("Again: ")
	if err != nil {
		return err
	}
	if again != password {
		return errors.New("the passwords differ")
	}
	return printHash(password, out)
}

// printHash prints the bcrypt hash of password.
func printHash(password string, out io.Writer) error {
	h, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.DefaultCost)
	if err != nil {
		return fmt.Errorf("hash the password: %w", err)
	}
	_, err = fmt.Fprintln(out, string(h))
	return err
}

// backupDatabase writes a consistent copy of the master's database, while
// the master may be running.
func backupDatabase(ctx context.Context, db, dest string) error {
	if _, err := os.Stat(db); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	st, err := sqlite.Open(ctx, db)
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	defer st.Close()
	return st.Backup(ctx, dest)
}
