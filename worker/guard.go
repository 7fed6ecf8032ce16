package worker

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
)

// Guard is the guard of a worker: a process of its own, started by the
// worker (Worker.GuardArgs; kiln-worker guard), that outlives it. It
// reads from in the process groups of the worker's running commands, one
// line each, "+PGID" when a command starts and "-PGID" once it has ended,
// and when in ends, because the worker closed it or died (killed with
// SIGKILL, say: the kernel closes its end of the pipe), it kills the
// groups still running, so that nothing the worker started is left
// behind. It returns once it has done so.
func Guard(in io.Reader) error {
	running := map[int]bool{}
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if len(line) < 2 {
			continue
		}
		pgid, err := strconv.Atoi(line[1:])
		if err != nil || pgid <= 1 {
			continue
		}
		switch line[0] {
		case '+':
			running[pgid] = true
		case '-':
			delete(running, pgid)
		}
	}
	var errs []string
	for pgid := range running {
		if err := killGroup(pgid); err != nil {
			errs = append(errs, fmt.Sprintf("%d: %v", pgid, err))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("guard: killing process groups: %s", strings.Join(errs, "; "))
	}
	return nil
}

// guardClient tells a worker's guard of its commands' process groups.
type guardClient struct {
	mu sync.Mutex
	w  io.WriteCloser
}

// group tells the guard that a process group started or ended.
func (g *guardClient) group(pgid int, running bool) {
	sign := "-"
	if running {
		sign = "+"
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	fmt.Fprintf(g.w, "%s%d\n", sign, pgid)
}
