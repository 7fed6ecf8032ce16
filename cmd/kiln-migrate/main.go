// Command kiln-migrate copies a master's records from its SQLite database
// into an empty PostgreSQL database, for a master that moves to
// ci/postgres. IDs and build numbers are kept, so links to builds and
// changes stay valid, and each table's rows are counted on both sides
// before the copy is committed.
//
// Usage:
//
//	kiln-migrate [-sqlite BASEDIR/state.sqlite] [-database URL]
//
// -database is the postgres:// URL of the target database; if empty it is
// read from $KILN_DATABASE_URL, which keeps its password out of ps. The
// target must be empty of Kiln's records (its schema is made if needed);
// the copy is one transaction: if anything fails, nothing is stored.
//
// Stop the master first: the copy reads one snapshot of the SQLite file,
// and what the master writes after it would not be copied. The SQLite
// file is first brought up to date with ci/sqlite's migrations, as the
// master would on its next start.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout)
	stop()
	switch {
	case errors.Is(err, flag.ErrHelp):
		os.Exit(2)
	case err != nil:
		fmt.Fprintln(os.Stderr, "kiln-migrate:", err)
		os.Exit(1)
	}
}

// run parses the command line and copies the database, reporting on out.
func run(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("kiln-migrate", flag.ContinueOnError)
	fs.SetOutput(out)
	src := fs.String("sqlite", "state.sqlite", "the master's SQLite database")
	dst := fs.String("database", "", "postgres:// URL of the target database ($KILN_DATABASE_URL if empty)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if *dst == "" {
		*dst = os.Getenv("KILN_DATABASE_URL")
	}
	if *dst == "" {
		return errors.New("no target database: give -database or set KILN_DATABASE_URL")
	}
	counts, err := Copy(ctx, *src, *dst)
	if err != nil {
		return err
	}
	for _, t := range tables {
		fmt.Fprintf(out, "%-22s %d rows\n", t.name, counts[t.name])
	}
	fmt.Fprintln(out, "copied; point the master's Database at the URL")
	return nil
}
