package remote

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kilnci/kiln/ci"
	"github.com/kilnci/kiln/internal/pyvalue"
	"github.com/kilnci/kiln/worker/protocol"
)

// An event is a worker request about a running command, checked and
// converted by the reader, handled by the goroutine running the command.
type event struct {
	seq       int64
	op        string
	commandID string
	size      int // bytes of the frame, for the command's backlog

	updates  []protocol.UpdatePair // update: values of the ci types
	frame    *bytes.Buffer         // update: the frame its output text shares (release)
	failure  any                   // complete: nil on success
	data     []byte                // *_write
	length   int                   // update_read_file
	atime    time.Time             // update_upload_file_utime
	mtime    time.Time
	hasTimes bool
}

// release gives back the frame an update's output text shares: the
// update has been applied, and what kept its text copied it.
func (ev *event) release() {
	if ev.frame != nil {
		putFrame(ev.frame)
		ev.frame, ev.updates = nil, nil
	}
}

// parseEvent checks the keys of a command message and converts its
// values. An error is a protocol violation.
func parseEvent(msg protocol.Message, size int) (*event, error) {
	ev := &event{seq: msg.Seq(), op: msg.Op(), size: size}
	var err error
	if ev.commandID, err = msg.String("command_id"); err != nil {
		return nil, err
	}
	switch ev.op {
	case protocol.OpUpdate:
		pairs, err := protocol.ParseUpdates(msg["args"])
		if err != nil {
			return nil, err
		}
		for i := range pairs {
			v, err := updateValue(pairs[i].Key, pairs[i].Value)
			if err != nil {
				return nil, fmt.Errorf("update of command %q: %w", ev.commandID, err)
			}
			pairs[i].Value = v
		}
		ev.updates = pairs
	case protocol.OpComplete:
		ev.failure = msg["args"]
	case protocol.OpUpdateUploadFileWrite, protocol.OpUpdateUploadDirectoryWrite:
		switch d := msg["args"].(type) {
		case []byte:
			ev.data = d
		case string:
			ev.data = []byte(d)
		default:
			return nil, fmt.Errorf("%w: op %q: \"args\" is a %T, not binary data", protocol.ErrBadMessage, ev.op, msg["args"])
		}
	case protocol.OpUpdateUploadFileUtime:
		if ev.atime, err = unixTime(msg, "access_time"); err != nil {
			return nil, err
		}
		if ev.mtime, err = unixTime(msg, "modified_time"); err != nil {
			return nil, err
		}
		ev.hasTimes = true
	case protocol.OpUpdateReadFile:
		n, err := msg.Int("length")
		if err != nil {
			return nil, err
		}
		if n < 0 {
			return nil, fmt.Errorf("%w: op %q: negative length %d", protocol.ErrBadMessage, ev.op, n)
		}
		ev.length = int(min(n, maxReadLength))
	}
	return ev, nil
}

// unixTime reads a time given as Unix seconds (a float or an integer).
func unixTime(msg protocol.Message, key string) (time.Time, error) {
	switch v := msg[key].(type) {
	case float64:
		if math.IsNaN(v) || math.IsInf(v, 0) {
			break
		}
		sec, frac := math.Modf(v)
		return time.Unix(int64(sec), int64(frac*1e9)), nil
	case int64:
		return time.Unix(v, 0), nil
	}
	return time.Time{}, fmt.Errorf("%w: op %q: %q is a %T, not a time", protocol.ErrBadMessage, msg.Op(), key, msg[key])
}

// updateValue converts an update's value to the type ci.RemoteCommand
// expects for its key.
func updateValue(key string, v any) (any, error) {
	switch key {
	case ci.UpdateStdout, ci.UpdateStderr, ci.UpdateHeader:
		return protocol.UpdateText(v)
	case ci.UpdateLog:
		name, text, err := protocol.UpdateLog(v)
		if err != nil {
			return nil, err
		}
		return [2]string{name, text}, nil
	case ci.UpdateRC:
		n, ok := v.(int64)
		if !ok || n < math.MinInt32 || n > math.MaxInt32 {
			return nil, fmt.Errorf("%w: rc is %#v, not an exit code", protocol.ErrBadMessage, v)
		}
		return int(n), nil
	case "elapsed":
		switch x := v.(type) {
		case float64:
			return x, nil
		case int64:
			return float64(x), nil
		}
		return nil, fmt.Errorf("%w: elapsed is a %T, not a number", protocol.ErrBadMessage, v)
	case "files":
		list, ok := v.([]any)
		if !ok {
			return nil, fmt.Errorf("%w: files is a %T, not a list", protocol.ErrBadMessage, v)
		}
		files := make([]string, len(list))
		for i, f := range list {
			s, ok := f.(string)
			if !ok {
				return nil, fmt.Errorf("%w: files[%d] is a %T, not a string", protocol.ErrBadMessage, i, f)
			}
			files[i] = s
		}
		return files, nil
	case "stat":
		list, ok := v.([]any)
		if !ok {
			return nil, fmt.Errorf("%w: stat is a %T, not a list", protocol.ErrBadMessage, v)
		}
		st := make([]int64, len(list))
		for i, f := range list {
			switch x := f.(type) {
			case int64:
				st[i] = x
			case float64:
				st[i] = int64(x)
			default:
				return nil, fmt.Errorf("%w: stat[%d] is a %T, not a number", protocol.ErrBadMessage, i, f)
			}
		}
		return st, nil
	}
	return v, nil
}

// A command is a command running on the worker: the queue of its events,
// filled by the reader and drained by the goroutine running it.
type command struct {
	id    string
	ready chan struct{} // signalled when events are queued

	mu      sync.Mutex
	space   *sync.Cond // signalled when the backlog shrinks or the command ends
	queue   []*event
	backlog int
	ended   bool
}

func (cmd *command) take() []*event {
	cmd.mu.Lock()
	q := cmd.queue
	cmd.queue = nil
	cmd.backlog = 0
	cmd.space.Broadcast()
	cmd.mu.Unlock()
	return q
}

// A handler applies a command's updates and transfers.
type handler interface {
	update(pairs []protocol.UpdatePair)
	transfer(ev *event) (any, error)
}

// runCommand starts a command on the worker and handles its events until
// the worker completes it. builder is "" for the master's own commands
// (those of the attach handshake), sent without a builder_name.
func (c *Conn) runCommand(ctx context.Context, builder, name string, args map[string]any, h handler) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	cmd := &command{ready: make(chan struct{}, 1)}
	cmd.space = sync.NewCond(&cmd.mu)
	c.mu.Lock()
	if c.cause != nil {
		c.mu.Unlock()
		return c.lost("run " + name)
	}
	cmd.id = strconv.FormatInt(c.nextID, 10)
	c.nextID++
	if c.cmds == nil {
		c.cmds = map[string]*command{}
	}
	c.cmds[cmd.id] = cmd
	c.mu.Unlock()
	defer c.endCommand(cmd)

	msg := protocol.Message{"op": protocol.OpStartCommand, "command_id": cmd.id, "command_name": name, "args": args}
	if builder != "" {
		msg["builder_name"] = builder
	}
	started, _, err := c.request(msg)
	if err != nil {
		return err
	}
	ctxDone := ctx.Done()
	var grace <-chan struct{}
	for {
		select {
		case <-cmd.ready:
			events := cmd.take()
			for i, ev := range events {
				if ev.op == protocol.OpComplete {
					c.respond(ev.seq, nil, nil)
					c.refuse(cmd, events[i+1:])
					if ev.failure != nil {
						msg, ok := ev.failure.(string)
						if !ok {
							msg = fmt.Sprint(ev.failure)
						}
						return &ci.CommandError{Command: name, Message: msg}
					}
					return nil
				}
				var result any
				var err error
				if ev.op == protocol.OpUpdate {
					h.update(ev.updates)
					ev.release()
				} else {
					result, err = h.transfer(ev)
				}
				c.respond(ev.seq, result, err)
			}
		case r := <-started:
			started = nil
			if err := r.ResponseError(); err != nil {
				return &ci.CommandError{Command: name, Message: fmt.Sprintf("the worker refused the command: %v", r["result"])}
			}
		case <-ctxDone:
			ctxDone = nil
			why := context.Cause(ctx).Error()
			c.log.Info("interrupting command", "command", name, "command_id", cmd.id, "why", why)
			interrupted, seq, err := c.request(protocol.Message{"op": protocol.OpInterruptCommand, "builder_name": builder, "command_id": cmd.id, "why": why})
			if err != nil {
				return err
			}
			// One timer ends both the wait for the command's end and the
			// wait for the answer to interrupt_command (which may outlive
			// the command: it is not stopped).
			expired := make(chan struct{})
			c.cfg.clock.AfterFunc(c.cfg.interruptTimeout, func() { close(expired) })
			go func() {
				select {
				case r := <-interrupted:
					if err := r.ResponseError(); err != nil {
						c.log.Warn("worker could not interrupt the command", "command", name, "command_id", cmd.id, "err", err)
					}
				case <-c.done:
				case <-expired:
					c.forget(seq)
				}
			}()
			grace = expired
		case <-grace:
			c.log.Warn("interrupted command did not complete", "command", name, "command_id", cmd.id, "waited", c.cfg.interruptTimeout)
			return ctx.Err()
		case <-c.done:
			return c.lost("run " + name)
		}
	}
}

// endCommand forgets a command and answers what was queued for it after
// its end.
func (c *Conn) endCommand(cmd *command) {
	c.mu.Lock()
	delete(c.cmds, cmd.id)
	if len(c.cmds) == 0 {
		c.cmds = nil // an idle connection keeps no table
	}
	c.mu.Unlock()
	cmd.mu.Lock()
	cmd.ended = true
	left := cmd.queue
	cmd.queue = nil
	cmd.space.Broadcast()
	cmd.mu.Unlock()
	c.refuse(cmd, left)
}

// refuse answers events that came after their command ended, and counts
// them.
func (c *Conn) refuse(cmd *command, events []*event) {
	for _, ev := range events {
		c.unknownCommands.Add(1)
		c.cfg.stats.unknownCommands.Add(1)
		c.respond(ev.seq, nil, fmt.Errorf("command %q has ended", cmd.id))
	}
}

// RunCommand implements ci.WorkerConn. It translates cmd for the worker
// (protocol.TranslateArgs, with the builder's folder and the worker's
// system), sends start_command, and hands the worker's updates and
// transfers to cmd, in order, from the calling goroutine. When ctx ends
// first, it sends interrupt_command and waits up to the listener's
// InterruptTimeout for the worker to complete the command.
func (c *Conn) RunCommand(ctx context.Context, builder string, cmd *ci.RemoteCommand) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := c.lost("run " + cmd.Name); err != nil {
		return err
	}
	c.mu.Lock()
	dir, ok := c.builders[builder]
	c.mu.Unlock()
	if !ok {
		return fmt.Errorf("worker %s: run %s: builder %q is not set up on this worker", c.name, cmd.Name, builder)
	}
	name, args, err := protocol.TranslateArgs(cmd.Name, cmd.Args, protocol.Target{BuilderDir: dir, System: c.system, Environ: c.environ})
	if err != nil {
		return fmt.Errorf("worker %s: %w", c.name, err)
	}
	return c.runCommand(ctx, builder, name, args, &stepHandler{cmd: cmd})
}

// stepHandler hands a command's events to a build step's RemoteCommand.
type stepHandler struct {
	cmd *ci.RemoteCommand
}

func (h *stepHandler) update(pairs []protocol.UpdatePair) {
	// RemoteCommand copies the output it keeps; OnUpdate, the step's own
	// code, may keep what it is given.
	keep := h.cmd.OnUpdate != nil
	for _, p := range pairs {
		v := p.Value
		if keep {
			v = cloneOutput(v)
		}
		h.cmd.Update(p.Key, v)
	}
}

// cloneOutput returns an update's value with its output text copied out
// of the frame it shares.
func cloneOutput(v any) any {
	switch x := v.(type) {
	case string:
		return strings.Clone(x)
	case [2]string:
		return [2]string{x[0], strings.Clone(x[1])}
	}
	return v
}

var (
	errNoWriter = errors.New("the master has no writer for this upload")
	errNoReader = errors.New("the master has no file for this download")
)

func (h *stepHandler) transfer(ev *event) (any, error) {
	up, down := h.cmd.Upload, h.cmd.Download
	switch ev.op {
	case protocol.OpUpdateUploadFileWrite, protocol.OpUpdateUploadDirectoryWrite:
		if up == nil {
			return nil, errNoWriter
		}
		_, err := up.Write(ev.data)
		return nil, err
	case protocol.OpUpdateUploadFileClose:
		if up == nil {
			return nil, errNoWriter
		}
		return nil, up.Close()
	case protocol.OpUpdateUploadFileUtime:
		if up == nil {
			return nil, errNoWriter
		}
		return nil, up.Utime(ev.atime, ev.mtime)
	case protocol.OpUpdateUploadDirectoryUnpack:
		if up == nil {
			return nil, errNoWriter
		}
		return nil, up.Unpack()
	case protocol.OpUpdateReadFile:
		if down == nil {
			return nil, errNoReader
		}
		buf := make([]byte, ev.length)
		n, err := io.ReadFull(down, buf)
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			err = nil
		}
		if err != nil {
			return nil, err
		}
		return buf[:n], nil // binary, empty at the end of the file
	case protocol.OpUpdateReadFileClose:
		if down == nil {
			return nil, nil
		}
		return nil, down.Close()
	}
	return nil, fmt.Errorf("unexpected op %q", ev.op)
}

// setupHandler keeps the first value of each update of a command the
// master runs for itself, as Buildbot's BasicRemoteCommand does.
type setupHandler struct {
	values map[string]any
}

func (h *setupHandler) update(pairs []protocol.UpdatePair) {
	if h.values == nil {
		h.values = map[string]any{}
	}
	for _, p := range pairs {
		if _, seen := h.values[p.Key]; !seen {
			h.values[p.Key] = cloneOutput(p.Value)
		}
	}
}

func (h *setupHandler) transfer(ev *event) (any, error) {
	return nil, fmt.Errorf("no transfer in this command")
}

// setupCommand runs one command of the attach handshake and checks that it
// reported rc 0 and the keys wanted.
func (c *Conn) setupCommand(ctx context.Context, name string, args map[string]any, want ...string) (map[string]any, error) {
	h := &setupHandler{}
	if err := c.runCommand(ctx, "", name, args, h); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	rc, ok := h.values[ci.UpdateRC]
	if !ok {
		return nil, fmt.Errorf("%s: the worker sent no rc", name)
	}
	if rc != 0 {
		return nil, fmt.Errorf("%s: the worker reported rc %v", name, rc)
	}
	for _, k := range want {
		if _, ok := h.values[k]; !ok {
			return nil, fmt.Errorf("%s: the worker sent no %q", name, k)
		}
	}
	return h.values, nil
}

// SetBuilders implements ci.WorkerConn, as Buildbot's master does it for
// msgpack workers: listdir of the worker's base folder, stat and rmdir of
// leftover folders if the worker asks for that (delete_leftover_dirs),
// mkdir of the builder folders missing (and "info"), then print "attached"
// once per builder.
func (c *Conn) SetBuilders(ctx context.Context, builders []ci.BuilderDir) error {
	if err := c.lost("set builders"); err != nil {
		return err
	}
	basedir := c.info.Basedir()
	dirs := make(map[string]string, len(builders))
	wanted := map[string]bool{"info": true}
	for _, b := range builders {
		dirs[b.Builder] = protocol.JoinPath(c.system, basedir, b.Dir)
		wanted[b.Dir] = true
	}
	values, err := c.setupCommand(ctx, protocol.CmdListdir, map[string]any{"path": basedir}, "files")
	if err != nil {
		return fmt.Errorf("worker %s: list builder folders: %w", c.name, err)
	}
	files, _ := values["files"].([]string)
	missing := map[string]bool{}
	for d := range wanted {
		missing[d] = true
	}
	var leftovers []string
	for _, f := range files {
		delete(missing, f)
		if !wanted[f] && pyvalue.Truthy(c.info["delete_leftover_dirs"]) {
			p := protocol.JoinPath(c.system, basedir, f)
			st, err := c.setupCommand(ctx, protocol.CmdStat, map[string]any{"path": p}, "stat")
			if err != nil {
				return fmt.Errorf("worker %s: stat leftover folder: %w", c.name, err)
			}
			if mode, _ := st["stat"].([]int64); len(mode) > 0 && mode[0]&0o170000 == 0o040000 {
				leftovers = append(leftovers, p)
			}
		}
	}
	if len(leftovers) > 0 {
		c.log.Info("deleting folders the master does not use", "paths", leftovers)
		if _, err := c.setupCommand(ctx, protocol.CmdRmdir, map[string]any{"paths": leftovers}); err != nil {
			return fmt.Errorf("worker %s: remove leftover folders: %w", c.name, err)
		}
	}
	if len(missing) > 0 {
		paths := make([]string, 0, len(missing))
		for d := range missing {
			paths = append(paths, d)
		}
		slices.Sort(paths)
		for i, d := range paths {
			paths[i] = protocol.JoinPath(c.system, basedir, d)
		}
		if _, err := c.setupCommand(ctx, protocol.CmdMkdir, map[string]any{"paths": paths}); err != nil {
			return fmt.Errorf("worker %s: create builder folders: %w", c.name, err)
		}
	}
	c.mu.Lock()
	c.builders = dirs
	c.mu.Unlock()

	// One print "attached" per builder, sent together, as Buildbot's
	// master does when each builder attaches the worker.
	waits := make([]<-chan protocol.Message, 0, len(builders))
	for range builders {
		ch, _, err := c.request(protocol.Message{"op": protocol.OpPrint, "message": "attached"})
		if err != nil {
			return fmt.Errorf("worker %s: %w", c.name, err)
		}
		waits = append(waits, ch)
	}
	for _, ch := range waits {
		select {
		case r := <-ch:
			if err := r.ResponseError(); err != nil {
				return fmt.Errorf("worker %s: print: %w", c.name, err)
			}
		case <-ctx.Done():
			return fmt.Errorf("worker %s: attach builders: %w", c.name, ctx.Err())
		case <-c.done:
			return c.lost("attach builders")
		}
	}
	return nil
}
