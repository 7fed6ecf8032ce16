package worker

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/kilnci/kiln/worker/command"
	"github.com/kilnci/kiln/worker/protocol"
)

// maxUpdatesInFlight is how many updates of one command may await the
// master's response at once. The output keeps flowing while the master
// handles what came before it, and a master slower than the output still
// slows the command's output down, a window at a time.
const maxUpdatesInFlight = 8

// host is a running command's command.Host: each call is one request to
// the master. Updates are sent without waiting for their response, up to
// maxUpdatesInFlight; the other requests wait for theirs. As the Host
// contract says, its methods are called one at a time.
type host struct {
	s       *session
	id      string
	waiting []<-chan protocol.Message // responses to the updates in flight, oldest first
}

var _ command.Host = (*host)(nil)

// request sends op for the command, with the key and value pairs kv, and
// waits for the master's response.
func (h *host) request(ctx context.Context, op string, kv ...any) (any, error) {
	return h.s.call(ctx, h.message(op, kv...))
}

func (h *host) message(op string, kv ...any) protocol.Message {
	m := protocol.Message{"op": op, "command_id": h.id}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i].(string)] = kv[i+1]
	}
	return m
}

// Update sends the updates as msgpack_experimental_v7 does: a list of
// [key, value] pairs, output text as [text, newline offsets, line times].
// It waits only when maxUpdatesInFlight updates await their response. The
// master refusing an update does not stop the command, as with
// buildbot-worker; a lost connection does.
func (h *host) Update(ctx context.Context, updates []command.Update) error {
	args := make([]any, len(updates))
	for i, u := range updates {
		args[i] = []any{u.Key, wireValue(u)}
	}
	for len(h.waiting) >= maxUpdatesInFlight {
		if err := h.awaitUpdate(ctx); err != nil {
			return err
		}
	}
	ch, err := h.s.send(h.message(protocol.OpUpdate, "args", args))
	if err != nil {
		return err
	}
	h.waiting = append(h.waiting, ch)
	return nil
}

// awaitUpdate waits for the response to the oldest update in flight.
func (h *host) awaitUpdate(ctx context.Context) error {
	ch := h.waiting[0]
	h.waiting = h.waiting[1:]
	_, err := h.s.await(ctx, protocol.OpUpdate, ch)
	var rerr *remoteError
	if errors.As(err, &rerr) {
		h.s.log.Warn("the master refused an update", "command_id", h.id, "err", err)
		return nil
	}
	return err
}

// drain waits for the responses to the updates still in flight, so that
// refusals are logged. The master answers in order, so after the response
// to the command's complete it does not wait.
func (h *host) drain(ctx context.Context) error {
	for len(h.waiting) > 0 {
		if err := h.awaitUpdate(ctx); err != nil {
			return err
		}
	}
	return nil
}

// wireValue returns an update's value as msgpack_experimental_v7 carries
// it.
func wireValue(u command.Update) any {
	switch u.Key {
	case "stdout", "stderr", "header":
		if s, ok := u.Value.(string); ok {
			return protocol.LinesValue(s, u.Times)
		}
	case "log":
		if lv, ok := u.Value.([2]string); ok {
			return []any{lv[0], protocol.LinesValue(lv[1], u.Times)}
		}
	case "files":
		// An empty list, not nil: Buildbot's master iterates over it.
		if f, ok := u.Value.([]string); ok && f == nil {
			return []string{}
		}
	}
	return u.Value
}

func (h *host) UploadFileWrite(ctx context.Context, data []byte) error {
	_, err := h.request(ctx, protocol.OpUpdateUploadFileWrite, "args", data)
	return err
}

func (h *host) UploadFileClose(ctx context.Context) error {
	_, err := h.request(ctx, protocol.OpUpdateUploadFileClose)
	return err
}

func (h *host) UploadFileUtime(ctx context.Context, access, modified time.Time) error {
	_, err := h.request(ctx, protocol.OpUpdateUploadFileUtime,
		"access_time", unixSeconds(access), "modified_time", unixSeconds(modified))
	return err
}

func unixSeconds(t time.Time) float64 {
	return float64(t.Unix()) + float64(t.Nanosecond())/1e9
}

func (h *host) UploadDirectoryWrite(ctx context.Context, data []byte) error {
	_, err := h.request(ctx, protocol.OpUpdateUploadDirectoryWrite, "args", data)
	return err
}

func (h *host) UploadDirectoryUnpack(ctx context.Context) error {
	_, err := h.request(ctx, protocol.OpUpdateUploadDirectoryUnpack)
	return err
}

// ReadFile asks the master for the next block of a download. The master
// answers with binary data (a string from some peers); more than length
// bytes is a protocol error.
func (h *host) ReadFile(ctx context.Context, length int) ([]byte, error) {
	res, err := h.request(ctx, protocol.OpUpdateReadFile, "length", length)
	if err != nil {
		return nil, err
	}
	var data []byte
	switch v := res.(type) {
	case []byte:
		data = v
	case string:
		data = []byte(v)
	case nil:
	default:
		return nil, fmt.Errorf("update_read_file: the master sent a %T, not data", res)
	}
	if len(data) > length {
		return nil, fmt.Errorf("update_read_file: the master sent %d bytes for %d asked", len(data), length)
	}
	return data, nil
}

func (h *host) ReadFileClose(ctx context.Context) error {
	_, err := h.request(ctx, protocol.OpUpdateReadFileClose)
	return err
}

// runQuiet runs a command for the worker's own needs, with nobody to
// report to: an error, or an rc other than 0, is returned.
func runQuiet(name string, args map[string]any, opts *command.Options) error {
	h := &quietHost{}
	if err := command.Run(context.Background(), h, name, args, opts); err != nil {
		return err
	}
	if h.rc != 0 {
		return fmt.Errorf("%s: %s (rc %d)", name, strings.TrimSpace(h.text.String()), h.rc)
	}
	return nil
}

// quietHost keeps the rc and the text of a command run by runQuiet.
type quietHost struct {
	rc   int
	text strings.Builder
}

var _ command.Host = (*quietHost)(nil)

var errNoTransfer = errors.New("no file transfer for the worker's own commands")

func (h *quietHost) Update(_ context.Context, updates []command.Update) error {
	for _, u := range updates {
		switch u.Key {
		case "rc":
			h.rc, _ = u.Value.(int)
		case "header", "stderr":
			s, _ := u.Value.(string)
			h.text.WriteString(s)
		}
	}
	return nil
}

func (h *quietHost) UploadFileWrite(context.Context, []byte) error { return errNoTransfer }
func (h *quietHost) UploadFileClose(context.Context) error         { return errNoTransfer }
func (h *quietHost) UploadFileUtime(context.Context, time.Time, time.Time) error {
	return errNoTransfer
}
func (h *quietHost) UploadDirectoryWrite(context.Context, []byte) error { return errNoTransfer }
func (h *quietHost) UploadDirectoryUnpack(context.Context) error        { return errNoTransfer }
func (h *quietHost) ReadFile(context.Context, int) ([]byte, error)      { return nil, errNoTransfer }
func (h *quietHost) ReadFileClose(context.Context) error                { return errNoTransfer }
