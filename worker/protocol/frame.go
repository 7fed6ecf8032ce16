package protocol

import (
	"errors"
	"fmt"
)

// MaxFrameSize is the largest frame either side accepts: 16 MiB. Frames are
// far smaller in practice (a file block is 64 KiB by default, an output
// update at most the worker's buffer size, 256 KiB from Kiln's master); a
// peer that sends more is closed.
const MaxFrameSize = 16 << 20

// The ops of the protocol's messages.
const (
	// Both ways.
	OpResponse = "response"

	// Master to worker.
	OpPrint             = "print"
	OpKeepalive         = "keepalive"
	OpGetWorkerInfo     = "get_worker_info"
	OpSetWorkerSettings = "set_worker_settings"
	OpSetBuilderList    = "set_builder_list"
	OpStartCommand      = "start_command"
	OpInterruptCommand  = "interrupt_command"
	OpShutdown          = "shutdown"

	// Worker to master.
	OpUpdate                      = "update"
	OpComplete                    = "complete"
	OpUpdateUploadFileWrite       = "update_upload_file_write"
	OpUpdateUploadFileClose       = "update_upload_file_close"
	OpUpdateUploadFileUtime       = "update_upload_file_utime"
	OpUpdateReadFile              = "update_read_file"
	OpUpdateReadFileClose         = "update_read_file_close"
	OpUpdateUploadDirectoryWrite  = "update_upload_directory_write"
	OpUpdateUploadDirectoryUnpack = "update_upload_directory_unpack"
)

// A Message is one frame: a map with at least "op" and "seq_number".
type Message map[string]any

// ErrBadMessage is wrapped by the errors of ParseMessage and of the typed
// accessors.
var ErrBadMessage = errors.New("bad message")

// ParseMessage decodes a frame into a message and checks that it has an op
// (a string) and a sequence number (a non-negative integer). It decodes as
// Decode does, except for the output of msgpack_experimental_v7's updates:
// in an "args" list of [key, value] pairs, the newline offsets and line
// times of a stdout, stderr, header or log value [text, offsets, times]
// come back as an []int64 and a []float64, as LinesValue makes them, when
// they are all integers and all floats.
func ParseMessage(frame []byte) (Message, error) {
	return parseMessage(&decoder{b: frame, updates: true})
}

// ParseMessageShared decodes a frame as ParseMessage does, for a reader
// that copies the output it is given and has no use for line times (a
// master storing it in logs): the text of the output in an "args" list of
// [key, value] pairs (stdout, stderr, header and log values) is not copied
// but shares frame's memory, and the newline offsets and line times of
// v7's [text, offsets, times], when they are all numbers, are read past
// and come back as nil. shares reports whether any text shares frame: if
// so, frame must not change while that text is in use. Output is most of a
// busy worker's bytes: a master reading it this way makes no copy of it
// and no garbage of its own.
func ParseMessageShared(frame []byte) (msg Message, shares bool, err error) {
	d := &decoder{b: frame, updates: true, share: true}
	msg, err = parseMessage(d)
	return msg, d.shared && err == nil, err
}

func parseMessage(d *decoder) (Message, error) {
	frame := d.b
	if len(frame) > MaxFrameSize {
		return nil, fmt.Errorf("%w: frame of %d bytes is over the %d-byte limit", ErrBadMessage, len(frame), MaxFrameSize)
	}
	v, err := d.value(0)
	if err != nil {
		return nil, err
	}
	if d.off != len(d.b) {
		return nil, fmt.Errorf("%w: %d bytes after the value", ErrMalformed, len(d.b)-d.off)
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%w: frame holds a %T, not a map", ErrBadMessage, v)
	}
	msg := Message(m)
	if _, ok := m["op"].(string); !ok {
		return nil, fmt.Errorf("%w: no op", ErrBadMessage)
	}
	if n, ok := m["seq_number"].(int64); !ok || n < 0 {
		return nil, fmt.Errorf("%w: op %q has no valid seq_number", ErrBadMessage, msg.Op())
	}
	return msg, nil
}

// Encode encodes the message as a frame.
func (m Message) Encode() ([]byte, error) { return Encode(map[string]any(m)) }

// Op returns the message's op.
func (m Message) Op() string { s, _ := m["op"].(string); return s }

// Seq returns the message's sequence number.
func (m Message) Seq() int64 { n, _ := m["seq_number"].(int64); return n }

// String returns the value of key if it is a string.
func (m Message) String(key string) (string, error) {
	s, ok := m[key].(string)
	if !ok {
		return "", fmt.Errorf("%w: op %q: %q is a %T, not a string", ErrBadMessage, m.Op(), key, m[key])
	}
	return s, nil
}

// Int returns the value of key if it is an integer.
func (m Message) Int(key string) (int64, error) {
	switch n := m[key].(type) {
	case int64:
		return n, nil
	case int:
		return int64(n), nil
	}
	return 0, fmt.Errorf("%w: op %q: %q is a %T, not an integer", ErrBadMessage, m.Op(), key, m[key])
}

// Map returns the value of key if it is a map; nil gives an empty map.
func (m Message) Map(key string) (map[string]any, error) {
	switch v := m[key].(type) {
	case map[string]any:
		return v, nil
	case nil:
		return map[string]any{}, nil
	}
	return nil, fmt.Errorf("%w: op %q: %q is a %T, not a map", ErrBadMessage, m.Op(), key, m[key])
}

// Response returns the response to a request with that sequence number:
// result on success, or an exception with the error's text.
func Response(seq int64, result any, err error) Message {
	m := Message{"op": OpResponse, "seq_number": seq, "result": result}
	if err != nil {
		m["result"] = err.Error()
		m["is_exception"] = true
	}
	return m
}

// ResponseError returns the error a response reports, if it is an
// exception.
func (m Message) ResponseError() error {
	if exc, _ := m["is_exception"].(bool); exc {
		return fmt.Errorf("peer: %v", m["result"])
	}
	return nil
}
