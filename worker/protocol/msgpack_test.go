package protocol

import (
	"bytes"
	"encoding/binary"
	"math"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestDecode_Spec(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		want any
	}{
		{"nil", []byte{0xc0}, nil},
		{"false", []byte{0xc2}, false},
		{"true", []byte{0xc3}, true},
		{"fixint", []byte{0x7f}, int64(127)},
		{"negfixint", []byte{0xe0}, int64(-32)},
		{"uint8", []byte{0xcc, 0xff}, int64(255)},
		{"uint16", []byte{0xcd, 0x01, 0x00}, int64(256)},
		{"uint32", []byte{0xce, 0, 1, 0, 0}, int64(65536)},
		{"uint64 big", []byte{0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, uint64(math.MaxUint64)},
		{"int8", []byte{0xd0, 0x80}, int64(-128)},
		{"int16", []byte{0xd1, 0xff, 0x00}, int64(-256)},
		{"int32", []byte{0xd2, 0xff, 0xff, 0xff, 0xff}, int64(-1)},
		{"int64", []byte{0xd3, 0x80, 0, 0, 0, 0, 0, 0, 0}, int64(math.MinInt64)},
		{"float32", []byte{0xca, 0x3f, 0xc0, 0, 0}, 1.5},
		{"float64", []byte{0xcb, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0}, 1.5},
		{"fixstr", []byte{0xa3, 'a', 'b', 'c'}, "abc"},
		{"str8", append([]byte{0xd9, 3}, "xyz"...), "xyz"},
		{"str16", append([]byte{0xda, 0, 3}, "xyz"...), "xyz"},
		{"bin8", []byte{0xc4, 2, 0, 1}, []byte{0, 1}},
		{"fixarray", []byte{0x92, 0x01, 0xa1, 'x'}, []any{int64(1), "x"}},
		{"array16", []byte{0xdc, 0, 1, 0xc0}, []any{nil}},
		{"fixmap", []byte{0x81, 0xa1, 'k', 0x02}, map[string]any{"k": int64(2)}},
		{"map16 bin key", []byte{0xde, 0, 1, 0xc4, 1, 'k', 0xc3}, map[string]any{"k": true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Decode(tt.in)
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestDecode_Malformed(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		want string
	}{
		{"empty", nil, "0 left"},
		{"huge array32", []byte{0xdd, 0xff, 0xff, 0xff, 0xff}, "4294967295 elements announced, 0 bytes left"},
		{"huge map32", []byte{0xdf, 0xff, 0xff, 0xff, 0xff, 0xc0, 0xc0}, "elements announced"},
		{"huge str32", []byte{0xdb, 0xff, 0xff, 0xff, 0xff, 'a'}, "elements announced"},
		{"huge bin32", []byte{0xc6, 0x7f, 0xff, 0xff, 0xff}, "elements announced"},
		{"truncated str", []byte{0xa5, 'a'}, "5 bytes announced, 1 left"},
		{"truncated int", []byte{0xd3, 0}, "8 bytes announced"},
		{"int key", []byte{0x81, 0x01, 0x02}, "map key is a int64"},
		{"ext", []byte{0xd4, 0x01, 0x00}, "extension type 0xd4"},
		{"never used", []byte{0xc1}, "byte 0xc1 is not a msgpack type"},
		{"trailing", []byte{0xc0, 0xc0}, "1 bytes after the value"},
		{"fixarray short", []byte{0x9f, 0xc0}, "15 elements announced"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Decode(tt.in)
			require.Error(t, err)
			assert.ErrorIs(t, err, ErrMalformed)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
	t.Run("deep", func(t *testing.T) {
		deep := bytes.Repeat([]byte{0x91}, MaxDepth+10)
		deep = append(deep, 0xc0)
		_, err := Decode(deep)
		assert.ErrorContains(t, err, "nested more than")
	})
}

// TestDecode_AllocatesInProportion decodes frames that announce huge
// containers and checks that the memory allocated stays proportional to the
// bytes received.
func TestDecode_AllocatesInProportion(t *testing.T) {
	// A frame of 1 MiB that announces arrays of 2^32-1 elements at every
	// level it can: each announcement is bounded by the bytes left.
	frame := []byte{0xdd, 0xff, 0xff, 0xff, 0xff}
	var nested bytes.Buffer
	for nested.Len() < 1<<20 {
		nested.Write([]byte{0xdd, 0, 0, 0, 1})
	}
	frames := [][]byte{frame, nested.Bytes(), bytes.Repeat([]byte{0x9f}, 1<<20)}
	for i, f := range frames {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		_, err := Decode(f)
		runtime.ReadMemStats(&after)
		assert.Error(t, err, "frame %d", i)
		allocated := after.TotalAlloc - before.TotalAlloc
		assert.Less(t, allocated, uint64(64*len(f)+1<<20), "frame %d of %d bytes allocated %d bytes", i, len(f), allocated)
	}
}

func TestEncode_RoundTrip(t *testing.T) {
	values := []any{
		nil, true, false, int64(0), int64(127), int64(128), int64(-33), int64(-129), int64(70000), int64(-70000),
		int64(1 << 40), int64(math.MinInt64), uint64(math.MaxUint64), 3.25,
		"", "short", strings.Repeat("x", 40), strings.Repeat("y", 300), strings.Repeat("z", 70000),
		[]byte{}, []byte("bin"), bytes.Repeat([]byte{1}, 70000),
		[]any{}, []any{int64(1), "two", []any{nil}}, make([]any, 20),
		map[string]any{}, map[string]any{"a": int64(1), "b": map[string]any{"c": []any{"d"}}},
	}
	big := map[string]any{}
	for i := range 20 {
		big[strings.Repeat("k", i+1)] = int64(i)
	}
	values = append(values, big)
	for _, v := range values {
		b, err := Encode(v)
		require.NoError(t, err)
		got, err := Decode(b)
		require.NoError(t, err, "%#v", v)
		if s, ok := v.([]any); ok && len(s) == 20 {
			assert.Len(t, got, 20)
			continue
		}
		assert.Equal(t, v, got)
	}
	// Go types encode as their msgpack kinds.
	b, err := Encode(map[string]any{"ints": []int{1, 2}, "strs": []string{"a"}, "u8": uint8(7), "f32": float32(0.5), "pair": [2]string{"x", "y"}, "nilmap": map[string]any(nil)})
	require.NoError(t, err)
	got, err := Decode(b)
	require.NoError(t, err)
	assert.Equal(t, map[string]any{"ints": []any{int64(1), int64(2)}, "strs": []any{"a"}, "u8": int64(7), "f32": 0.5, "pair": []any{"x", "y"}, "nilmap": nil}, got)
	_, err = Encode(map[int]string{1: "x"})
	assert.ErrorContains(t, err, "map key type int")
	_, err = Encode(struct{}{})
	assert.Error(t, err)
}

// TestEncode_Trace checks the encoding of a message of the recorded trace
// of a stock worker and master, byte for byte, and that the master's maps
// are encoded as Python encodes them (same bytes up to key order).
func TestEncode_Trace(t *testing.T) {
	// [  402.523 ms] M->W ... len=39 {'op': 'print', 'message': 'attached', 'seq_number': 0}
	got, err := Message{"op": "print", "message": "attached", "seq_number": int64(0)}.Encode()
	require.NoError(t, err)
	assert.Len(t, got, 39)
	m, err := ParseMessage(got)
	require.NoError(t, err)
	assert.Equal(t, "print", m.Op())
	assert.Equal(t, int64(0), m.Seq())
	// [  404.942 ms] M->W len=32 {'op': 'get_worker_info', 'seq_number': 1}
	got, err = Message{"op": "get_worker_info", "seq_number": int64(1)}.Encode()
	require.NoError(t, err)
	assert.Len(t, got, 32)
	// [  404.059 ms] W->M len=33 {'op': 'response', 'seq_number': 0, 'result': None}
	got, err = Response(0, nil, nil).Encode()
	require.NoError(t, err)
	assert.Len(t, got, 33)
}

func TestParseMessage(t *testing.T) {
	enc := func(v any) []byte { b, err := Encode(v); require.NoError(t, err); return b }
	_, err := ParseMessage(enc([]any{1}))
	assert.ErrorContains(t, err, "not a map")
	_, err = ParseMessage(enc(map[string]any{"seq_number": 1}))
	assert.ErrorContains(t, err, "no op")
	_, err = ParseMessage(enc(map[string]any{"op": "print", "seq_number": -1}))
	assert.ErrorContains(t, err, "no valid seq_number")
	_, err = ParseMessage(enc(map[string]any{"op": "print", "seq_number": "x"}))
	assert.ErrorIs(t, err, ErrBadMessage)
	m, err := ParseMessage(enc(map[string]any{"op": "start_command", "seq_number": 3, "args": map[string]any{"x": 1}, "command_id": "7"}))
	require.NoError(t, err)
	id, err := m.String("command_id")
	require.NoError(t, err)
	assert.Equal(t, "7", id)
	_, err = m.Int("command_id")
	assert.ErrorContains(t, err, `"command_id" is a string, not an integer`)
	args, err := m.Map("args")
	require.NoError(t, err)
	assert.Equal(t, int64(1), args["x"])
	r := Response(4, nil, assert.AnError)
	assert.Equal(t, true, r["is_exception"])
	assert.Error(t, r.ResponseError())
	assert.NoError(t, Response(4, "ok", nil).ResponseError())
}

func TestUpdates(t *testing.T) {
	t0 := time.Unix(1795832408, 250000000)
	v := LinesValue("a\nbc\n", []time.Time{t0, t0.Add(time.Second)})
	assert.Equal(t, []any{"a\nbc\n", []int64{1, 4}, []float64{1795832408.25, 1795832409.25}}, v)
	b, err := Encode(map[string]any{"args": []any{[]any{"stdout", v}, []any{"rc", 0}, []any{"log", []any{"build.log", v}}}})
	require.NoError(t, err)
	m, err := Decode(b)
	require.NoError(t, err)
	pairs, err := ParseUpdates(m.(map[string]any)["args"])
	require.NoError(t, err)
	require.Len(t, pairs, 3)
	text, err := UpdateText(pairs[0].Value)
	require.NoError(t, err)
	assert.Equal(t, "a\nbc\n", text)
	assert.Equal(t, "rc", pairs[1].Key)
	name, text, err := UpdateLog(pairs[2].Value)
	require.NoError(t, err)
	assert.Equal(t, [2]string{"build.log", "a\nbc\n"}, [2]string{name, text})
	// ParseMessage gives the offsets and times as LinesValue made them;
	// anything else as Decode does.
	odd := []any{"x\n", []any{int64(1), 2.5}, []any{int64(3)}}
	b, err = Encode(map[string]any{"op": "update", "seq_number": 1, "args": []any{[]any{"stdout", v}, []any{"stderr", odd}, []any{"rc", 0}, []any{"log", []any{"build.log", v}}, "extra"}})
	require.NoError(t, err)
	msg, err := ParseMessage(b)
	require.NoError(t, err)
	assert.Equal(t, []any{[]any{"stdout", v}, []any{"stderr", odd}, []any{"rc", int64(0)}, []any{"log", []any{"build.log", v}}, "extra"}, msg["args"])
	m, err = Decode(b)
	require.NoError(t, err)
	again, err := Encode(map[string]any(msg))
	require.NoError(t, err)
	assert.Equal(t, b, again)
	assert.Equal(t, []any{"a\nbc\n", []any{int64(1), int64(4)}, []any{1795832408.25, 1795832409.25}}, m.(map[string]any)["args"].([]any)[0].([]any)[1])
	text, err = UpdateText("plain")
	require.NoError(t, err)
	assert.Equal(t, "plain", text)
	_, err = UpdateText(int64(3))
	assert.Error(t, err)
	_, err = ParseUpdates([]any{[]any{"x"}})
	assert.Error(t, err)
	_, err = ParseUpdates("nope")
	assert.Error(t, err)
	_, _, err = UpdateLog([]any{int64(1), "x"})
	assert.Error(t, err)
}

func FuzzDecode(f *testing.F) {
	seeds := []any{
		map[string]any{"op": "print", "message": "attached", "seq_number": 0},
		map[string]any{"op": "response", "seq_number": 1, "result": map[string]any{"admin": "Your Name Here <admin@youraddress.invalid>\n", "basedir": "/w", "numcpus": 2, "worker_commands": map[string]any{"shell": "3.1"}, "delete_leftover_dirs": 0}},
		map[string]any{"op": "update", "args": []any{[]any{"files", []any{"buildbot.tac", "info"}}, []any{"rc", 0}, []any{"elapsed", 0.000108}}, "command_id": "0", "seq_number": 0},
		map[string]any{"op": "update", "args": []any{[]any{"stdout", LinesValue("AAAA\n", nil)}, []any{"rc", 0}}, "command_id": "3", "seq_number": 6},
		map[string]any{"op": "complete", "args": nil, "command_id": "0", "seq_number": 1},
		map[string]any{"op": "update_upload_file_write", "args": []byte("data"), "command_id": "2", "seq_number": 4},
	}
	for _, s := range seeds {
		b, err := Encode(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{0xdd, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := Decode(b)
		if err != nil {
			return
		}
		// What decodes re-encodes, and decodes to the same value.
		again, err := Encode(v)
		if err != nil {
			t.Fatalf("decoded %#v does not encode: %v", v, err)
		}
		v2, err := Decode(again)
		if err != nil {
			t.Fatalf("re-encoded value does not decode: %v", err)
		}
		b1, _ := Encode(v2)
		if !bytes.Equal(again, b1) {
			t.Fatalf("encoding is not stable")
		}
		// ParseMessage decodes as Decode does, but for the types of
		// output updates' offsets and times: what it returns encodes the
		// same.
		// ParseMessageShared refuses what ParseMessage refuses.
		_, _, errShared := ParseMessageShared(b)
		if _, err := ParseMessage(b); (err == nil) != (errShared == nil) {
			t.Fatalf("ParseMessage: %v; ParseMessageShared: %v", err, errShared)
		}
		if m, err := ParseMessage(b); err == nil {
			b2, err := Encode(map[string]any(m))
			if err != nil {
				t.Fatalf("parsed %#v does not encode: %v", m, err)
			}
			if !bytes.Equal(again, b2) {
				t.Fatalf("ParseMessage and Decode differ: %#v and %#v", m, v)
			}
		}
	})
}

// ParseMessage reads the offsets and times of a large update, whatever
// width MessagePack gave each number, as Decode reads them; a truncated
// one is malformed.
func TestParseMessage_WideOutput(t *testing.T) {
	b := wideOutputFrame()
	msg, err := ParseMessage(b)
	require.NoError(t, err)
	want := []any{"x\n", []int64{5, 200, 0x1234, 0x10000, 1 << 32, -128, -32768, 2 << 32}, []float64{1.5, 1795832408.25}}
	assert.Equal(t, []any{[]any{"stdout", want}}, msg["args"])
	for n := 1; n < 40; n++ {
		_, err := ParseMessage(b[:len(b)-n])
		assert.ErrorIs(t, err, ErrMalformed, "cut by %d bytes", n)
	}
	// An offset beyond int64 and a time that is not a float leave the
	// lists as Decode makes them.
	odd := slices.Clone(b)
	i := bytes.IndexByte(odd, 0xcf)
	odd[i+1] = 0x80
	msg, err = ParseMessage(odd)
	require.NoError(t, err)
	offsets := msg["args"].([]any)[0].([]any)[1].([]any)[1]
	assert.Equal(t, []any{int64(5), int64(200), int64(0x1234), int64(0x10000), uint64(1<<63 | 1<<32), int64(-128), int64(-32768), int64(2 << 32)}, offsets)
}

// wideOutputFrame is an update whose stdout has offsets of every width,
// signed and unsigned, and times as float32 and float64, as a MessagePack
// writer other than Encode may write them.
func wideOutputFrame() []byte {
	var b []byte
	b = append(b, 0x83, 0xa2, 'o', 'p', 0xa6, 'u', 'p', 'd', 'a', 't', 'e', 0xaa)
	b = append(b, "seq_number"...)
	b = append(b, 0x01, 0xa4, 'a', 'r', 'g', 's', 0x91, 0x92, 0xa6)
	b = append(b, "stdout"...)
	b = append(b, 0x93, 0xa2, 'x', '\n')
	b = append(b, 0x98, 0x05, 0xcc, 200, 0xcd, 0x12, 0x34, 0xce, 0x00, 0x01, 0x00, 0x00,
		0xcf, 0, 0, 0, 1, 0, 0, 0, 0, 0xd0, 0x80, 0xd1, 0x80, 0x00, 0xd3, 0, 0, 0, 2, 0, 0, 0, 0)
	b = append(b, 0x92, 0xca, 0x3f, 0xc0, 0x00, 0x00, 0xcb)
	return binary.BigEndian.AppendUint64(b, math.Float64bits(1795832408.25))
}

// ParseMessageShared gives the text of output updates in the frame's
// memory, reads past their offsets and times when they are numbers, and
// otherwise parses as ParseMessage does.
func TestParseMessageShared(t *testing.T) {
	inFrame := func(frame []byte, s string) bool {
		p := uintptr(unsafe.Pointer(unsafe.StringData(s)))
		start := uintptr(unsafe.Pointer(&frame[0]))
		return p >= start && p+uintptr(len(s)) <= start+uintptr(len(frame))
	}
	v := LinesValue("a\nbc\n", nil)
	odd := []any{"x\n", []any{"not an offset"}, []any{int64(3)}}
	frame, err := Encode(map[string]any{"op": "update", "seq_number": 1, "command_id": "c7", "args": []any{
		[]any{"stdout", v}, []any{"stderr", odd}, []any{"header", "plain\n"}, []any{"rc", 0},
		[]any{"log", []any{"build.log", v}}, []any{"custom", "kept apart"}}})
	require.NoError(t, err)
	msg, shares, err := ParseMessageShared(frame)
	require.NoError(t, err)
	assert.True(t, shares)
	args := msg["args"].([]any)
	assert.Equal(t, []any{
		[]any{"stdout", []any{"a\nbc\n", nil, nil}},
		[]any{"stderr", []any{"x\n", []any{"not an offset"}, nil}},
		[]any{"header", "plain\n"}, []any{"rc", int64(0)},
		[]any{"log", []any{"build.log", []any{"a\nbc\n", nil, nil}}},
		[]any{"custom", "kept apart"},
	}, args)
	for _, text := range []string{
		args[0].([]any)[1].([]any)[0].(string),
		args[1].([]any)[1].([]any)[0].(string),
		args[2].([]any)[1].(string),
		args[4].([]any)[1].([]any)[1].([]any)[0].(string),
	} {
		assert.True(t, inFrame(frame, text), "output %q shares the frame", text)
	}
	// Nothing else does: what a reader keeps without copying.
	for _, s := range []string{msg.Op(), args[4].([]any)[1].([]any)[0].(string), args[5].([]any)[1].(string), msg["command_id"].(string)} {
		assert.False(t, inFrame(frame, s), "%q is a copy", s)
	}
	plain, err := ParseMessage(frame)
	require.NoError(t, err)
	assert.Equal(t, plain["command_id"], msg["command_id"])

	// The offsets and times of every width are read past; a truncated
	// frame is malformed, as for ParseMessage.
	wide := wideOutputFrame()
	msg, shares, err = ParseMessageShared(wide)
	require.NoError(t, err)
	assert.True(t, shares)
	assert.Equal(t, []any{[]any{"stdout", []any{"x\n", nil, nil}}}, msg["args"])
	for n := 1; n < 40; n++ {
		_, shares, err := ParseMessageShared(wide[:len(wide)-n])
		assert.ErrorIs(t, err, ErrMalformed, "cut by %d bytes", n)
		assert.False(t, shares, "a malformed frame gives no text")
	}

	// A frame whose output is empty, or that has none, shares nothing:
	// its reader may use it again at once.
	for _, args := range []any{
		[]any{[]any{"rc", 0}, []any{"elapsed", 0.5}},
		[]any{[]any{"stdout", LinesValue("", nil)}, []any{"header", ""}},
		"ValueError: no such file",
	} {
		frame, err := Encode(map[string]any{"op": "update", "seq_number": 2, "command_id": "c7", "args": args})
		require.NoError(t, err)
		_, shares, err := ParseMessageShared(frame)
		require.NoError(t, err)
		assert.False(t, shares, "args %#v", args)
	}
}

// BenchmarkParseMessage decodes an update of 64 KiB of 99-character
// lines, as a worker sends a fast command's output.
func BenchmarkParseMessage(b *testing.B) {
	text := strings.Repeat(strings.Repeat("a", 99)+"\n", 650)
	frame, err := Encode(map[string]any{"op": "update", "seq_number": 7, "command_id": "3", "args": []any{[]any{"stdout", LinesValue(text, nil)}}})
	if err != nil {
		b.Fatal(err)
	}
	for _, parse := range []struct {
		name string
		f    func([]byte) (Message, error)
	}{{"Copied", ParseMessage}, {"Shared", func(frame []byte) (Message, error) {
		msg, _, err := ParseMessageShared(frame)
		return msg, err
	}}} {
		b.Run(parse.name, func(b *testing.B) {
			b.SetBytes(int64(len(text)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := parse.f(frame); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
