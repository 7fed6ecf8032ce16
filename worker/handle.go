package worker

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/kilnci/kiln/worker/command"
	"github.com/kilnci/kiln/worker/protocol"
)

// handle answers one request of the master. Requests are handled in the
// order they arrive, by the reading goroutine, so each handler is quick:
// commands run in goroutines of their own.
func (s *session) handle(msg protocol.Message) {
	var result any
	var err error
	switch msg.Op() {
	case protocol.OpPrint:
		err = s.print(msg)
	case protocol.OpKeepalive:
		s.log.Debug("keepalive from master")
	case protocol.OpGetWorkerInfo:
		result = command.WorkerInfo(command.HostInfo{
			BaseDir:            s.a.baseDir,
			Admin:              s.a.w.Admin,
			Host:               s.a.w.Host,
			Env:                s.a.env,
			DeleteLeftoverDirs: s.a.w.DeleteLeftoverDirs,
		})
	case protocol.OpSetWorkerSettings:
		err = s.setWorkerSettings(msg)
	case protocol.OpSetBuilderList:
		result, err = s.setBuilderList(msg)
	case protocol.OpStartCommand:
		// startCommand responds itself, before the command's first
		// update.
		s.startCommand(msg)
		return
	case protocol.OpInterruptCommand:
		err = s.interruptCommand(msg)
	case protocol.OpShutdown:
		s.log.Info("the master asks the worker to shut down")
		// The answer goes out before the connection closes.
		s.respond(msg.Seq(), nil, nil)
		s.shutOnce.Do(func() { close(s.shutdown) })
		return
	default:
		// buildbot-worker's answer, word for word.
		err = fmt.Errorf("Command %s does not exist.", msg.Op())
	}
	if err != nil {
		s.log.Warn("request failed", "op", msg.Op(), "err", err)
	}
	s.respond(msg.Seq(), result, err)
}

// markAttached records that the master is setting the worker up for its
// builders: the connection was accepted.
func (s *session) markAttached() {
	s.mu.Lock()
	first := !s.attached
	s.attached = true
	s.mu.Unlock()
	if first {
		s.log.Info("attached to master")
	}
}

func (s *session) print(msg protocol.Message) error {
	text, err := msg.String("message")
	if err != nil {
		return err
	}
	if text == "attached" {
		// Buildbot's masters say it once, then once per builder: the
		// worker says it once, when it is set up (markAttached).
		s.log.Debug("message from master", "message", text)
		return nil
	}
	s.log.Info("message from master", "message", text)
	return nil
}

// setWorkerSettings applies the master's settings for the output of the
// commands that start from now on. Settings the master leaves out keep
// their value.
func (s *session) setWorkerSettings(msg protocol.Message) error {
	args, err := msg.Map("args")
	if err != nil {
		return err
	}
	s.markAttached()
	s.mu.Lock()
	opts := s.opts
	s.mu.Unlock()
	var errs []error
	if v, ok := args["buffer_size"]; ok {
		n, ok := v.(int64)
		if !ok || n <= 0 || n > protocol.MaxFrameSize {
			errs = append(errs, fmt.Errorf("buffer_size %v is not a size from 1 to %d", v, protocol.MaxFrameSize))
		}
		opts.BufferSize = int(n)
	}
	if v, ok := args["buffer_timeout"]; ok {
		secs, ok := number(v)
		if !ok || secs < 0 || secs > 3600 {
			errs = append(errs, fmt.Errorf("buffer_timeout %v is not a number of seconds from 0 to 3600", v))
		}
		opts.BufferTimeout = time.Duration(secs * float64(time.Second))
		if opts.BufferTimeout == 0 {
			opts.BufferTimeout = -1 // no wait, rather than the default
		}
	}
	if v, ok := args["max_line_length"]; ok {
		n, ok := v.(int64)
		if !ok || n <= 1 || n > protocol.MaxFrameSize {
			errs = append(errs, fmt.Errorf("max_line_length %v is not a length from 2 to %d", v, protocol.MaxFrameSize))
		}
		opts.MaxLineLength = int(n)
	}
	if v, ok := args["newline_re"]; ok {
		re, ok := v.(string)
		if !ok {
			errs = append(errs, fmt.Errorf("newline_re is a %T, not a string", v))
		}
		opts.NewlineRE = re
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("set_worker_settings: %w", err)
	}
	s.mu.Lock()
	s.opts = opts
	s.mu.Unlock()
	return nil
}

func number(v any) (float64, bool) {
	switch n := v.(type) {
	case int64:
		return float64(n), true
	case float64:
		return n, true
	}
	return 0, false
}

// setBuilderList creates the folder of each builder the master lists, as
// [name, folder] pairs, and returns their names. A folder is taken from
// the base folder unless it is absolute. With DeleteLeftoverDirs, the
// base folder's other folders (but info) are removed.
func (s *session) setBuilderList(msg protocol.Message) (any, error) {
	list, ok := msg["builders"].([]any)
	if !ok && msg["builders"] != nil {
		return nil, fmt.Errorf("set_builder_list: builders is a %T, not a list", msg["builders"])
	}
	s.markAttached()
	names := make([]string, 0, len(list))
	paths := make([]string, 0, len(list))
	wanted := map[string]bool{"info": true}
	for i, b := range list {
		pair, ok := b.([]any)
		if !ok || len(pair) != 2 {
			return nil, fmt.Errorf("set_builder_list: builders[%d] is not a [name, folder] pair", i)
		}
		name, ok1 := pair[0].(string)
		dir, ok2 := pair[1].(string)
		if !ok1 || !ok2 || name == "" || dir == "" {
			return nil, fmt.Errorf("set_builder_list: builders[%d] is not a pair of names", i)
		}
		names = append(names, name)
		p := protocol.JoinPath(command.System(), s.a.baseDir, dir)
		paths = append(paths, p)
		if rel, err := filepath.Rel(s.a.baseDir, filepath.Clean(p)); err == nil {
			wanted[strings.SplitN(rel, string(filepath.Separator), 2)[0]] = true
		}
	}
	s.mu.Lock()
	opts := s.opts
	s.mu.Unlock()
	if len(paths) > 0 {
		if err := runQuiet(protocol.CmdMkdir, map[string]any{"paths": paths}, &opts); err != nil {
			return nil, fmt.Errorf("set_builder_list: create builder folders: %w", err)
		}
	}
	if s.a.w.DeleteLeftoverDirs {
		var leftover []string
		entries, _ := os.ReadDir(s.a.baseDir)
		for _, e := range entries {
			if e.IsDir() && !wanted[e.Name()] {
				leftover = append(leftover, filepath.Join(s.a.baseDir, e.Name()))
			}
		}
		if len(leftover) > 0 {
			s.log.Info("deleting folders no builder uses", "folders", leftover)
			if err := runQuiet(protocol.CmdRmdir, map[string]any{"paths": leftover}, &opts); err != nil {
				return nil, fmt.Errorf("set_builder_list: delete leftover folders: %w", err)
			}
		}
	}
	return names, nil
}

// startCommand starts a command in its own goroutine, after answering the
// request: an exception for a command that cannot start (unknown, missing
// arguments, an id already running), as buildbot-worker does.
func (s *session) startCommand(msg protocol.Message) {
	fail := func(err error) {
		s.log.Warn("cannot start command", "err", err)
		s.respond(msg.Seq(), nil, err)
	}
	id, err := msg.String("command_id")
	if err != nil {
		fail(err)
		return
	}
	name, err := msg.String("command_name")
	if err != nil {
		fail(err)
		return
	}
	args, err := msg.Map("args")
	if err != nil {
		fail(err)
		return
	}
	builder, _ := msg["builder_name"].(string)
	if err := check(name, args); err != nil {
		fail(err)
		return
	}
	s.markAttached()
	s.mu.Lock()
	switch {
	case s.stopping:
		s.mu.Unlock()
		fail(fmt.Errorf("command %s: the worker is shutting down", id))
		return
	case s.cmds[id] != nil:
		s.mu.Unlock()
		fail(fmt.Errorf("command %s is already running", id))
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.cmds[id] = cancel
	s.cmdWG.Add(1)
	opts := s.opts
	s.mu.Unlock()
	// The response goes out before the command's first update.
	s.respond(msg.Seq(), nil, nil)
	go s.runCommand(ctx, cancel, id, builder, name, args, &opts)
}

// check reports the errors command.Run finds before running anything: an
// unknown command or missing arguments. (Run checks those before it looks
// at its context, and starts nothing once its context is done.)
func check(name string, args map[string]any) error {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := command.Run(ctx, nil, name, args, nil)
	if errors.Is(err, command.ErrUnknownCommand) || errors.Is(err, command.ErrMissingArgs) {
		return err
	}
	return nil
}

// runCommand runs a started command to its end and sends complete.
func (s *session) runCommand(ctx context.Context, cancel context.CancelFunc, id, builder, name string, args map[string]any, opts *command.Options) {
	defer s.cmdWG.Done()
	defer cancel()
	log := s.log.With("command_id", id)
	if builder != "" {
		log = log.With("builder", builder)
	}
	opts.Logger = log
	log.Info("command started", "command", name)
	h := &host{s: s, id: id}
	err := command.Run(ctx, h, name, args, opts)
	s.mu.Lock()
	delete(s.cmds, id)
	s.mu.Unlock()
	var failure any
	if err != nil {
		failure = err.Error()
	}
	// complete goes out without waiting for the updates in flight: the
	// master handles a command's messages in order.
	_, cerr := s.call(context.Background(), protocol.Message{"op": protocol.OpComplete, "command_id": id, "args": failure})
	h.drain(context.Background())
	switch {
	case errors.Is(cerr, errConnLost):
		log.Warn("command ended but the master is gone", "command", name, "err", err)
	case cerr != nil:
		log.Warn("command complete; the master refused the completion", "command", name, "err", err, "complete_err", cerr)
	case err != nil:
		log.Info("command failed", "command", name, "err", err)
	default:
		log.Info("command complete", "command", name)
	}
}

// interruptCommand interrupts a running command: its context is cancelled
// and it reports how it ended, then completes. An unknown id is not an
// error: the command may just have ended.
func (s *session) interruptCommand(msg protocol.Message) error {
	id, err := msg.String("command_id")
	if err != nil {
		return err
	}
	why, _ := msg["why"].(string)
	s.mu.Lock()
	cancel := s.cmds[id]
	s.mu.Unlock()
	if cancel == nil {
		s.log.Info("asked to interrupt a command that is not running", "command_id", id, "why", why)
		return nil
	}
	s.log.Info("interrupting command", "command_id", id, "why", why)
	cancel()
	return nil
}
