//go:build unix

package command_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"regexp"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/kilnci/kiln/worker/command"
)

// The test binary doubles as the programs the shell tests run: run as
// "TEST -- NAME ARGS..." with KILN_HELPER=1 in its environment, TestMain
// runs the helper NAME instead of the tests.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "--" {
		if os.Getenv("KILN_HELPER") != "1" {
			// Never run the tests again from a test.
			fmt.Fprintln(os.Stderr, "helper run without KILN_HELPER=1")
			os.Exit(98)
		}
		if len(os.Args) < 3 {
			os.Exit(97)
		}
		os.Exit(runHelper(os.Args[2], os.Args[3:]))
	}
	os.Exit(m.Run())
}

func runHelper(name string, args []string) int {
	switch name {
	case "exit": // exit CODE: print nothing
		code, _ := strconv.Atoi(args[0])
		return code
	case "print": // print STDOUT STDERR CODE: exact text on each stream
		os.Stdout.WriteString(args[0])
		os.Stderr.WriteString(args[1])
		code, _ := strconv.Atoi(args[2])
		return code
	case "lines": // lines N: N numbered lines
		n, _ := strconv.Atoi(args[0])
		var b bytes.Buffer
		for i := range n {
			fmt.Fprintf(&b, "line %d of the output of the benchmark command\n", i)
		}
		os.Stdout.Write(b.Bytes())
		return 0
	case "cat":
		io.Copy(os.Stdout, os.Stdin)
		return 0
	case "env": // env NAME...: NAME=value lines, <unset> when unset
		for _, k := range args {
			v, ok := os.LookupEnv(k)
			if !ok {
				v = "<unset>"
			}
			fmt.Printf("%s=%s\n", k, v)
		}
		return 0
	case "pwd":
		wd, _ := os.Getwd()
		fmt.Println(wd)
		return 0
	case "hang": // hang: print "ready" and wait to be killed
		fmt.Println("ready")
		select {}
	case "ignore-term": // ignore-term: ignore SIGTERM, print "ready", wait
		signal.Ignore(syscall.SIGTERM)
		fmt.Println("ready")
		select {}
	case "exit-on-term": // exit-on-term: print "ready", exit 0 on SIGTERM
		c := make(chan os.Signal, 1)
		signal.Notify(c, syscall.SIGTERM)
		fmt.Println("ready")
		<-c
		fmt.Println("got TERM")
		return 0
	case "grandchild": // grandchild PIDFILE: start a child that ignores SIGTERM and prints "ready", hang
		signal.Ignore(syscall.SIGTERM)
		cmd := exec.Command(os.Args[0], "--", "ignore-term")
		cmd.Stdout = os.Stdout // the grandchild holds the output open
		if err := cmd.Start(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 3
		}
		os.WriteFile(args[0], []byte(strconv.Itoa(cmd.Process.Pid)), 0o644)
		select {}
	case "writelog": // writelog FILE TEXT: append TEXT to FILE
		f, err := os.OpenFile(args[0], os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 3
		}
		f.WriteString(args[1])
		f.Close()
		return 0
	}
	fmt.Fprintf(os.Stderr, "unknown helper %q\n", name)
	return 99
}

// helper returns the argv of a helper program; its environment needs
// KILN_HELPER=1 (testOptions sets it).
func helper(args ...string) []any {
	argv := []any{os.Args[0], "--"}
	for _, a := range args {
		argv = append(argv, a)
	}
	return argv
}

// A call is one Host call a command made.
type call struct {
	Op               string
	Updates          []command.Update
	Data             string
	Length           int
	Access, Modified time.Time
}

// fakeHost records what a command does, serves downloads from Download,
// and fails the operation named FailOn.
type fakeHost struct {
	Download io.Reader
	FailOn   string
	// OnUpdate, when set, sees every update as it is sent.
	OnUpdate func(command.Update)

	mu    sync.Mutex
	calls []call
}

var errRefused = errors.New("refused by the master")

func (h *fakeHost) record(c call) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.calls = append(h.calls, c)
	if c.Op == h.FailOn {
		return errRefused
	}
	return nil
}

func (h *fakeHost) Update(ctx context.Context, updates []command.Update) error {
	if ctx.Err() != nil {
		panic("host called with a cancelled context")
	}
	for _, u := range updates {
		if u.Key == "stdout" || u.Key == "stderr" || u.Key == "header" || u.Key == "log" {
			text, _ := u.Value.(string)
			if u.Key == "log" {
				text = u.Value.([2]string)[1]
			}
			if n := bytes.Count([]byte(text), []byte("\n")); n != len(u.Times) {
				panic(fmt.Sprintf("update %q has %d lines and %d times", text, n, len(u.Times)))
			}
		}
		if h.OnUpdate != nil {
			h.OnUpdate(u)
		}
	}
	return h.record(call{Op: "update", Updates: append([]command.Update(nil), updates...)})
}

func (h *fakeHost) UploadFileWrite(ctx context.Context, data []byte) error {
	return h.record(call{Op: "write", Data: string(data)})
}

func (h *fakeHost) UploadFileClose(ctx context.Context) error {
	return h.record(call{Op: "close"})
}

func (h *fakeHost) UploadFileUtime(ctx context.Context, access, modified time.Time) error {
	return h.record(call{Op: "utime", Access: access, Modified: modified})
}

func (h *fakeHost) UploadDirectoryWrite(ctx context.Context, data []byte) error {
	return h.record(call{Op: "dirwrite", Data: string(data)})
}

func (h *fakeHost) UploadDirectoryUnpack(ctx context.Context) error {
	return h.record(call{Op: "unpack"})
}

func (h *fakeHost) ReadFile(ctx context.Context, length int) ([]byte, error) {
	if err := h.record(call{Op: "read", Length: length}); err != nil {
		return nil, err
	}
	buf := make([]byte, length)
	n, err := io.ReadFull(h.Download, buf)
	if err != nil && err != io.EOF && err != io.ErrUnexpectedEOF {
		return nil, err
	}
	return buf[:n], nil
}

func (h *fakeHost) ReadFileClose(ctx context.Context) error {
	return h.record(call{Op: "readclose"})
}

// Calls returns the calls made, update batches included.
func (h *fakeHost) Calls() []call {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]call(nil), h.calls...)
}

// Ops returns the names of the calls made, one "update" per batch.
func (h *fakeHost) Ops() []string {
	var ops []string
	for _, c := range h.Calls() {
		ops = append(ops, c.Op)
	}
	return ops
}

// kv is an update without its line times, for comparisons.
type kv struct {
	Key   string
	Value any
}

var elapsedTime = regexp.MustCompile(`elapsedTime=\d+\.\d{6}\n`)

// Updates returns the updates sent, in order, batches flattened and
// consecutive text of the same stream joined, so that the result does not
// depend on batching. Elapsed times are replaced by "X" (0.0 for
// "elapsed") after checking their form.
func (h *fakeHost) Updates(t testing.TB) []kv {
	t.Helper()
	var out []kv
	for _, c := range h.Calls() {
		for _, u := range c.Updates {
			v := u.Value
			switch u.Key {
			case "header":
				v = elapsedTime.ReplaceAllString(v.(string), "elapsedTime=X\n")
			case "elapsed":
				f, ok := v.(float64)
				require.True(t, ok && f >= 0, "elapsed %v", v)
				v = 0.0
			}
			if n := len(out); n > 0 && out[n-1].Key == u.Key {
				switch prev := out[n-1].Value.(type) {
				case string:
					out[n-1].Value = prev + v.(string)
					continue
				case [2]string:
					if lv := v.([2]string); lv[0] == prev[0] {
						out[n-1].Value = [2]string{prev[0], prev[1] + lv[1]}
						continue
					}
				}
			}
			out = append(out, kv{u.Key, v})
		}
	}
	return out
}

// Text returns the text of all the updates of one stream key, joined.
func (h *fakeHost) Text(key string) string {
	var b bytes.Buffer
	for _, c := range h.Calls() {
		for _, u := range c.Updates {
			if u.Key == key {
				b.WriteString(u.Value.(string))
			}
		}
	}
	return b.String()
}

// Value returns the last value of key, or nil.
func (h *fakeHost) Value(key string) any {
	var v any
	for _, c := range h.Calls() {
		for _, u := range c.Updates {
			if u.Key == key {
				v = u.Value
			}
		}
	}
	return v
}

// waitLine returns an OnUpdate function and a channel closed when the
// stdout text so far contains line.
func waitLine(line string) (func(command.Update), <-chan struct{}) {
	var mu sync.Mutex
	var seen bytes.Buffer
	ch := make(chan struct{})
	done := false
	return func(u command.Update) {
		if u.Key != "stdout" {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		seen.WriteString(u.Value.(string))
		if !done && bytes.Contains(seen.Bytes(), []byte(line)) {
			done = true
			close(ch)
		}
	}, ch
}
