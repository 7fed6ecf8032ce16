//go:build linux

package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// stopTimeout is how long a process stopped with SIGTERM may take to exit
// before it is killed.
const stopTimeout = 15 * time.Second

// A proc is a child process, in a process group of its own so that the
// processes it starts can be killed with it.
type proc struct {
	cmd  *exec.Cmd
	out  string // the file its output goes to
	done chan struct{}
	err  error // how it exited; set before done is closed
}

// startProc starts cmd with its output (standard output too, unless it is
// set) going to the file out.
func startProc(cmd *exec.Cmd, out string) (*proc, error) {
	f, err := os.Create(out)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if cmd.Stdout == nil {
		cmd.Stdout = f
	}
	cmd.Stderr = f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", filepath.Base(cmd.Path), err)
	}
	p := &proc{cmd: cmd, out: out, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// exited reports whether the process has exited.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM, kills the process group if it has not exited within
// stopTimeout, and returns once it has exited (and killed what is left of
// its group).
func (p *proc) stop() {
	p.cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(stopTimeout)
	defer t.Stop()
	select {
	case <-p.done:
	case <-t.C:
	}
	syscall.Kill(-p.pid(), syscall.SIGKILL)
	<-p.done
}

// tail returns the end of the process's output, for error messages.
func (p *proc) tail() string {
	b, _ := os.ReadFile(p.out)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(bytes.TrimSpace(b))
}

// stopAll stops the processes together.
func stopAll(ps []*proc) {
	var wg sync.WaitGroup
	for _, p := range ps {
		wg.Go(p.stop)
	}
	wg.Wait()
}

// A master is a running benchmaster.
type master struct {
	*proc
	api        *api
	workerAddr string
}

// startMaster starts the benchmaster bin in dir, accepting workers w1 ...
// wn, its log step as s says, with more flags (-workers and -http, to
// start again on the same ports), and waits until its API answers.
func startMaster(ctx context.Context, bin, dir string, n int, s Sizes, flags ...string) (*master, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	args := []string{"-dir", dir, "-n", strconv.Itoa(n), "-log-bytes", strconv.FormatInt(s.LogBytes, 10)}
	if s.LogFile != "" {
		args = append(args, "-log-file", s.LogFile)
	}
	cmd := exec.Command(bin, append(args, flags...)...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	p, err := startProc(cmd, filepath.Join(dir, "master.log"))
	if err != nil {
		return nil, err
	}
	lines := make(chan string, 1)
	go func() {
		s := bufio.NewScanner(stdout)
		if s.Scan() {
			lines <- s.Text()
		}
		close(lines)
		for s.Scan() {
		}
	}()
	var line string
	select {
	case line = <-lines:
	case <-time.After(time.Minute):
	case <-ctx.Done():
	}
	var workerAddr, httpAddr string
	if _, err := fmt.Sscanf(line, "ready workers=%s http=%s", &workerAddr, &httpAddr); err != nil {
		p.stop()
		return nil, fmt.Errorf("the master did not start (%q): %s", line, p.tail())
	}
	m := &master{proc: p, api: newAPI(httpAddr), workerAddr: workerAddr}
	err = poll(ctx, time.Minute, 10*time.Millisecond, func() (bool, error) {
		if m.exited() {
			return false, errors.New("the master exited")
		}
		_, err := m.api.connected(ctx)
		return err == nil, nil
	})
	if err != nil {
		m.stop()
		return nil, fmt.Errorf("the master's API does not answer: %w: %s", err, p.tail())
	}
	return m, nil
}

// poll calls cond every interval until it reports true or an error, or the
// timeout passes.
func poll(ctx context.Context, timeout, interval time.Duration, cond func() (bool, error)) error {
	deadline := time.Now().Add(timeout)
	for {
		ok, err := cond()
		if err != nil || ok {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %s", timeout)
		}
		select {
		case <-time.After(interval):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// A kind is a kind of worker program.
type kind struct {
	name string
	// create makes a worker's folder for the master at addr.
	create func(ctx context.Context, dir, addr, name string) error
	// command runs the worker of dir in the foreground.
	command func(dir string) *exec.Cmd
}

func kilnWorker(bin string) kind {
	return kind{
		name: "kiln-worker",
		create: func(ctx context.Context, dir, addr, name string) error {
			return runCmd(exec.CommandContext(ctx, bin, "create-worker", "-q", dir, addr, name, password))
		},
		command: func(dir string) *exec.Cmd { return exec.Command(bin, "start", "-q", dir) },
	}
}

func buildbotWorker(bin string) kind {
	return kind{
		name: "buildbot-worker",
		create: func(ctx context.Context, dir, addr, name string) error {
			return runCmd(exec.CommandContext(ctx, bin, "create-worker", "--quiet", "--protocol", "msgpack_experimental_v7", dir, addr, name, password))
		},
		command: func(dir string) *exec.Cmd { return exec.Command(bin, "start", "--nodaemon", dir) },
	}
}

// password is the password of every worker of benchmaster.
const password = "pass"

func runCmd(cmd *exec.Cmd) error {
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w: %s", strings.Join(cmd.Args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// workerNames returns the names wfrom ... wto.
func workerNames(from, to int) []string {
	var names []string
	for i := from; i <= to; i++ {
		names = append(names, fmt.Sprintf("w%d", i))
	}
	return names
}

// createWorkers makes the folders of the named workers under dir, a few
// at a time, and returns them by name.
func createWorkers(ctx context.Context, k kind, dir, addr string, names []string, parallel int) (map[string]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	dirs := map[string]string{}
	for _, n := range names {
		dirs[n] = filepath.Join(dir, n)
	}
	sem := make(chan struct{}, max(parallel, 1))
	errs := make([]error, len(names))
	var wg sync.WaitGroup
	for i, n := range names {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			errs[i] = k.create(ctx, dirs[n], addr, n)
		})
	}
	wg.Wait()
	return dirs, errors.Join(errs...)
}

// startWorkers starts the workers of the folders, one after the other as
// fast as it can.
func startWorkers(k kind, dirs []string) ([]*proc, error) {
	var ps []*proc
	for _, d := range dirs {
		p, err := startProc(k.command(d), d+".out")
		if err != nil {
			stopAll(ps)
			return nil, err
		}
		ps = append(ps, p)
	}
	return ps, nil
}

// status returns a field of /proc/PID/status in bytes (the Vm* fields,
// which the kernel gives in kB).
func status(pid int, field string) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(b)) {
		name, value, ok := strings.Cut(line, ":")
		if !ok || name != field {
			continue
		}
		f := strings.Fields(value)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("/proc/%d/status: %s: unexpected %q", pid, field, value)
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		return n << 10, err
	}
	return 0, fmt.Errorf("/proc/%d/status has no %s", pid, field)
}

// resetPeak resets the process's VmHWM to its current resident size.
func resetPeak(pid int) error {
	return os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0)
}

// cpuTime returns the CPU time the process has used (user and system, of
// all its threads, those gone included), to the nanosecond: the reading
// of its CPU clock (clock_getcpuclockid(3)). The times of /proc/PID/stat
// count in ticks of 10 ms, and a short run of a few builds read 0 there.
func cpuTime(pid int) (time.Duration, error) {
	// Linux's clock ID for a process's CPU time: ^pid << 3, and 2 for the
	// scheduler's count (CPUCLOCK_SCHED).
	clock := int32((^pid)<<3 | 2)
	var ts unix.Timespec
	if err := unix.ClockGettime(clock, &ts); err != nil {
		return 0, fmt.Errorf("CPU time of process %d: %w", pid, err)
	}
	return time.Duration(ts.Nano()), nil
}

// A cpuMeter measures the CPU time processes use between start and stop.
type cpuMeter struct {
	pids  []int
	begin []time.Duration
	err   error
}

func (c *cpuMeter) start(pids ...int) {
	c.pids, c.begin = pids, nil
	for _, pid := range pids {
		t, err := cpuTime(pid)
		c.err = errors.Join(c.err, err)
		c.begin = append(c.begin, t)
	}
}

// stop returns the CPU time each process used since start.
func (c *cpuMeter) stop() ([]time.Duration, error) {
	used := make([]time.Duration, len(c.pids))
	for i, pid := range c.pids {
		t, err := cpuTime(pid)
		c.err = errors.Join(c.err, err)
		used[i] = t - c.begin[i]
	}
	return used, c.err
}
