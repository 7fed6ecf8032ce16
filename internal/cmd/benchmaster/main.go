// Command benchmaster is the master that workerbench measures network
// workers against, run as a process of its own so that its memory can be
// read from /proc. It accepts workers w1 ... wN (password "pass"), and
// idle workers i1 ... iM in no builder (-idle M), and has three builders
// and a force scheduler named "force" for them:
//
//	one   a step running true, on w1 ... wN
//	ten   ten steps running true, on w1 ... wN
//	log   a step writing -log-bytes bytes of 99-character lines to its
//	      standard output, on w1 (with -log-file, a step writing
//	      that file's content: cat FILE)
//
// Once both listeners are open it prints one line to standard output,
//
//	ready workers=HOST:PORT http=HOST:PORT
//
// and serves until SIGINT or SIGTERM. Anyone may force builds: it listens
// on the loopback interface by default.
//
//	benchmaster -dir DIR [-workers 127.0.0.1:0] [-http 127.0.0.1:0] [-n 4] [-idle 0] [-log-bytes 100000000] [-log-file FILE] [-pprof ADDR] [-cpuprofile FILE]
//
// With -cpuprofile, it profiles its CPU from start to end into FILE
// (go tool pprof reads it).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	httppprof "net/http/pprof"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"

	"github.com/kilnci/kiln/ci"
	_ "github.com/kilnci/kiln/ci/sqlite"
	"github.com/kilnci/kiln/ci/steps"
	"github.com/kilnci/kiln/scheduler"
	"github.com/kilnci/kiln/webui"
	"github.com/kilnci/kiln/worker/remote"
)

// Password is every worker's password.
const Password = "pass"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "benchmaster:", err)
		os.Exit(1)
	}
}

// LogCommand is the shell command of the "log" builder's step: n bytes of
// output, in lines of 99 characters and a newline, the last line without
// one (what head -c N /dev/zero | tr '\0' a | fold -w 99 writes). yes and
// head write it at several times the rate of that pipeline, which capped
// the measured rate of the log into the store (about 90 MB/s alone on the
// 2-core benchmark machine, and a fifth of the machine's CPU time during
// the log build).
func LogCommand(n int64) string {
	if n <= 0 {
		return "true"
	}
	lines := (n + 98) / 99
	return fmt.Sprintf(`l=$(printf %%099d 0 | tr 0 a); yes "$l" | head -n %d; printf %%.%ds "$l"`, lines-1, n-99*(lines-1))
}

// TenSteps is how many steps the "ten" builder has.
const TenSteps = 10

// Config returns the master's configuration for n workers. The log
// builder's step writes logBytes bytes (LogCommand), or the content of
// logFile if it is not empty.
func Config(dir string, n int, logBytes int64, logFile string) ci.MasterConfig {
	var workers []ci.WorkerConfig
	var names []string
	for i := range n {
		name := fmt.Sprintf("w%d", i+1)
		workers = append(workers, ci.WorkerConfig{Name: name, Password: Password})
		names = append(names, name)
	}
	var ten []ci.Step
	for i := range TenSteps {
		ten = append(ten, &steps.ShellCommand{StepOptions: ci.StepOptions{Name: fmt.Sprintf("step%d", i+1)}, Command: []string{"true"}})
	}
	logStep := &steps.ShellCommand{StepOptions: ci.StepOptions{Name: "log"}, Command: LogCommand(logBytes)}
	if logFile != "" {
		logStep.Command = []string{"cat", logFile}
	}
	return ci.MasterConfig{
		Title:   "Kiln worker benchmark",
		BaseDir: dir,
		Workers: workers,
		Builders: []ci.BuilderConfig{
			{Name: "one", Workers: names, Steps: []ci.Step{
				&steps.ShellCommand{StepOptions: ci.StepOptions{Name: "true"}, Command: []string{"true"}},
			}},
			{Name: "log", Workers: names[:1], Steps: []ci.Step{
				logStep,
			}},
			{Name: "ten", Workers: names, Steps: ten},
		},
		Schedulers: []ci.Scheduler{&scheduler.Force{Name: "force", Builders: []string{"one", "log", "ten"}}},
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("benchmaster", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", "", "the master's base folder (required)")
	workerAddr := fs.String("workers", "127.0.0.1:0", "address where workers connect")
	httpAddr := fs.String("http", "127.0.0.1:0", "address of the JSON API")
	n := fs.Int("n", 4, "number of workers, w1 ... wN")
	idle := fs.Int("idle", 0, "number of idle workers, i1 ... iM, in no builder")
	logBytes := fs.Int64("log-bytes", 100_000_000, "bytes the log builder's step writes")
	logFile := fs.String("log-file", "", "a file whose content the log builder's step writes (cat FILE), instead of -log-bytes bytes made by yes and head")
	pprofAddr := fs.String("pprof", "", "address to serve net/http/pprof on (none if empty)")
	verbose := fs.Bool("v", false, "log at info level (warnings only by default)")
	cpuProfile := fs.String("cpuprofile", "", "file to write a CPU profile of the whole run to (none if empty)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *dir == "" || *n < 1 || *idle < 0 || *logBytes < 0 || fs.NArg() > 0 {
		fs.Usage()
		return errors.New("usage: benchmaster -dir DIR [options]")
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return fmt.Errorf("CPU profile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("CPU profile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}

	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelInfo
	}
	cfg := Config(*dir, *n, *logBytes, *logFile)
	for i := range *idle {
		cfg.Workers = append(cfg.Workers, ci.WorkerConfig{Name: fmt.Sprintf("i%d", i+1), Password: Password})
	}
	cfg.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	var closers []io.Closer
	defer func() {
		for _, c := range closers {
			c.Close()
		}
	}()
	listen := func(addr, what string) (net.Listener, error) {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("listen for %s: %w", what, err)
		}
		closers = append(closers, ln)
		return ln, nil
	}
	wln, err := listen(*workerAddr, "workers")
	if err != nil {
		return err
	}
	hln, err := listen(*httpAddr, "the API")
	if err != nil {
		return err
	}
	if *pprofAddr != "" {
		pln, err := listen(*pprofAddr, "pprof")
		if err != nil {
			return err
		}
		mux := http.NewServeMux()
		mux.HandleFunc("/debug/pprof/", httppprof.Index)
		mux.HandleFunc("/debug/pprof/profile", httppprof.Profile)
		mux.HandleFunc("/debug/pprof/trace", httppprof.Trace)
		go http.Serve(pln, mux)
	}
	cfg.Services = []ci.Service{
		&remote.Listener{Listener: wln},
		&webui.Server{Listener: hln, Options: webui.Options{Authz: webui.Authz{Force: webui.Anyone}}},
	}
	m, err := ci.NewMaster(cfg)
	if err != nil {
		return err
	}
	closers = nil // Run closes the listeners it is given
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	fmt.Fprintf(stdout, "ready workers=%s http=%s\n", wln.Addr(), hln.Addr())
	return <-done
}
