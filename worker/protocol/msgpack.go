package protocol

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"reflect"
	"slices"
	"unsafe"
)

// The MessagePack codec of the protocol. Kiln decodes frames itself rather
// than with a general-purpose library because every length in a frame comes
// from the peer: a 5-byte frame can announce an array of 4 billion elements,
// and decoders that trust it allocate gigabytes. Decode never allocates
// more than the frame's own bytes justify: a container may not announce
// more elements than there are bytes left to hold them, and a string or
// binary value may not be longer than what is left.

// MaxDepth is how deeply containers may nest in a decoded value.
const MaxDepth = 64

// ErrMalformed is wrapped by every decoding error.
var ErrMalformed = errors.New("malformed msgpack")

// Decode decodes one MessagePack value that must fill b exactly. Values
// come back as nil, bool, int64 (uint64 beyond its range), float64, string,
// []byte (binary), []any and map[string]any (keys must be strings; binary
// keys become strings). Extension types are refused.
func Decode(b []byte) (any, error) {
	d := decoder{b: b}
	v, err := d.value(0)
	if err != nil {
		return nil, err
	}
	if d.off != len(d.b) {
		return nil, fmt.Errorf("%w: %d bytes after the value", ErrMalformed, len(d.b)-d.off)
	}
	return v, nil
}

type decoder struct {
	b   []byte
	off int
	// updates: the top-level map's "args" may be the [key, value] pairs
	// of an update, whose output values are decoded by outputValue.
	updates bool
	// share: output text shares b's memory, and the offsets and times
	// of v7's output are read past (ParseMessageShared); inText: the
	// value being decoded is output text; shared: a string shares b.
	share, inText, shared bool
}

func (d *decoder) errorf(format string, args ...any) error {
	return fmt.Errorf("%w at offset %d: %s", ErrMalformed, d.off, fmt.Sprintf(format, args...))
}

func (d *decoder) left() int { return len(d.b) - d.off }

func (d *decoder) take(n int) ([]byte, error) {
	if n < 0 || n > d.left() {
		return nil, d.errorf("%d bytes announced, %d left", n, d.left())
	}
	p := d.b[d.off : d.off+n]
	d.off += n
	return p, nil
}

func (d *decoder) uint(n int) (uint64, error) {
	p, err := d.take(n)
	if err != nil {
		return 0, err
	}
	switch n {
	case 1:
		return uint64(p[0]), nil
	case 2:
		return uint64(binary.BigEndian.Uint16(p)), nil
	case 4:
		return uint64(binary.BigEndian.Uint32(p)), nil
	}
	return binary.BigEndian.Uint64(p), nil
}

// length reads a length of n bytes and checks that at least per bytes per
// element remain for it.
func (d *decoder) length(n, per int) (int, error) {
	u, err := d.uint(n)
	if err != nil {
		return 0, err
	}
	if u > uint64(d.left()/per) {
		return 0, d.errorf("%d elements announced, %d bytes left", u, d.left())
	}
	return int(u), nil
}

func (d *decoder) value(depth int) (any, error) {
	if depth > MaxDepth {
		return nil, d.errorf("nested more than %d deep", MaxDepth)
	}
	p, err := d.take(1)
	if err != nil {
		return nil, err
	}
	c := p[0]
	switch {
	case c <= 0x7f:
		return int64(c), nil
	case c >= 0xe0:
		return int64(int8(c)), nil
	case c&0xf0 == 0x80:
		return d.mapOf(int(c&0x0f), depth)
	case c&0xf0 == 0x90:
		return d.arrayOf(int(c&0x0f), depth)
	case c&0xe0 == 0xa0:
		return d.str(int(c & 0x1f))
	}
	switch c {
	case 0xc0:
		return nil, nil
	case 0xc2:
		return false, nil
	case 0xc3:
		return true, nil
	case 0xc4, 0xc5, 0xc6:
		n, err := d.length(1<<(c-0xc4), 1)
		if err != nil {
			return nil, err
		}
		p, err := d.take(n)
		if err != nil {
			return nil, err
		}
		return slices.Clone(p), nil
	case 0xca:
		u, err := d.uint(4)
		return float64(math.Float32frombits(uint32(u))), err
	case 0xcb:
		u, err := d.uint(8)
		return math.Float64frombits(u), err
	case 0xcc, 0xcd, 0xce, 0xcf:
		u, err := d.uint(1 << (c - 0xcc))
		if err != nil {
			return nil, err
		}
		if u > math.MaxInt64 {
			return u, nil
		}
		return int64(u), nil
	case 0xd0:
		u, err := d.uint(1)
		return int64(int8(u)), err
	case 0xd1:
		u, err := d.uint(2)
		return int64(int16(u)), err
	case 0xd2:
		u, err := d.uint(4)
		return int64(int32(u)), err
	case 0xd3:
		u, err := d.uint(8)
		return int64(u), err
	case 0xd9, 0xda, 0xdb:
		n, err := d.length(1<<(c-0xd9), 1)
		if err != nil {
			return nil, err
		}
		return d.str(n)
	case 0xdc, 0xdd:
		n, err := d.length(2<<(c-0xdc), 1)
		if err != nil {
			return nil, err
		}
		return d.arrayOf(n, depth)
	case 0xde, 0xdf:
		n, err := d.length(2<<(c-0xde), 2)
		if err != nil {
			return nil, err
		}
		return d.mapOf(n, depth)
	case 0xc7, 0xc8, 0xc9, 0xd4, 0xd5, 0xd6, 0xd7, 0xd8:
		d.off--
		return nil, d.errorf("extension type 0x%02x is not used by the protocol", c)
	}
	d.off--
	return nil, d.errorf("byte 0x%02x is not a msgpack type", c)
}

func (d *decoder) str(n int) (string, error) {
	p, err := d.take(n)
	if err != nil {
		return "", err
	}
	if d.inText && n > 0 {
		d.shared = true
		return unsafe.String(&p[0], n), nil
	}
	return string(p), nil
}

func (d *decoder) arrayOf(n, depth int) ([]any, error) {
	if n > d.left() {
		return nil, d.errorf("%d elements announced, %d bytes left", n, d.left())
	}
	a := make([]any, n)
	for i := range a {
		v, err := d.value(depth + 1)
		if err != nil {
			return nil, err
		}
		a[i] = v
	}
	return a, nil
}

func (d *decoder) mapOf(n, depth int) (map[string]any, error) {
	if n > d.left()/2 {
		return nil, d.errorf("%d entries announced, %d bytes left", n, d.left())
	}
	m := make(map[string]any, n)
	for range n {
		k, err := d.value(depth + 1)
		if err != nil {
			return nil, err
		}
		var key string
		switch x := k.(type) {
		case string:
			key = x
		case []byte:
			key = string(x)
		default:
			return nil, d.errorf("map key is a %T, not a string", k)
		}
		var v any
		if d.updates && depth == 0 && key == "args" {
			v, err = d.updateArgs(depth + 1)
		} else {
			v, err = d.value(depth + 1)
		}
		if err != nil {
			return nil, err
		}
		m[key] = v
	}
	return m, nil
}

// Encode encodes v as MessagePack: nil, booleans, integers, floats,
// strings, []byte (as binary), slices and arrays, and maps with string keys
// (written in key order, so that equal values encode equally).
func Encode(v any) ([]byte, error) {
	var e encoder
	if err := e.value(reflect.ValueOf(v), 0); err != nil {
		return nil, err
	}
	return e.b, nil
}

// AppendEncode appends the encoding of v to b.
func AppendEncode(b []byte, v any) ([]byte, error) {
	e := encoder{b: b}
	if err := e.value(reflect.ValueOf(v), 0); err != nil {
		return b, err
	}
	return e.b, nil
}

type encoder struct{ b []byte }

func (e *encoder) uint(c byte, n int, u uint64) {
	e.b = append(e.b, c)
	switch n {
	case 1:
		e.b = append(e.b, byte(u))
	case 2:
		e.b = binary.BigEndian.AppendUint16(e.b, uint16(u))
	case 4:
		e.b = binary.BigEndian.AppendUint32(e.b, uint32(u))
	case 8:
		e.b = binary.BigEndian.AppendUint64(e.b, u)
	}
}

func (e *encoder) int(i int64) {
	switch {
	case i >= 0:
		e.unsigned(uint64(i))
	case i >= -32:
		e.b = append(e.b, byte(int8(i)))
	case i >= math.MinInt8:
		e.uint(0xd0, 1, uint64(i))
	case i >= math.MinInt16:
		e.uint(0xd1, 2, uint64(i))
	case i >= math.MinInt32:
		e.uint(0xd2, 4, uint64(i))
	default:
		e.uint(0xd3, 8, uint64(i))
	}
}

func (e *encoder) unsigned(u uint64) {
	switch {
	case u <= 0x7f:
		e.b = append(e.b, byte(u))
	case u <= math.MaxUint8:
		e.uint(0xcc, 1, u)
	case u <= math.MaxUint16:
		e.uint(0xcd, 2, u)
	case u <= math.MaxUint32:
		e.uint(0xce, 4, u)
	default:
		e.uint(0xcf, 8, u)
	}
}

func (e *encoder) header(fix, c16, c32 byte, fixMax, n int) {
	switch {
	case n <= fixMax:
		e.b = append(e.b, fix|byte(n))
	case n <= math.MaxUint16:
		e.uint(c16, 2, uint64(n))
	default:
		e.uint(c32, 4, uint64(n))
	}
}

func (e *encoder) str(s string) {
	switch n := len(s); {
	case n <= 31:
		e.b = append(e.b, 0xa0|byte(n))
	case n <= math.MaxUint8:
		e.uint(0xd9, 1, uint64(n))
	case n <= math.MaxUint16:
		e.uint(0xda, 2, uint64(n))
	default:
		e.uint(0xdb, 4, uint64(n))
	}
	e.b = append(e.b, s...)
}

func (e *encoder) value(v reflect.Value, depth int) error {
	if depth > MaxDepth {
		return fmt.Errorf("msgpack: value nested more than %d deep", MaxDepth)
	}
	if !v.IsValid() {
		e.b = append(e.b, 0xc0)
		return nil
	}
	switch v.Kind() {
	case reflect.Interface, reflect.Pointer:
		if v.IsNil() {
			e.b = append(e.b, 0xc0)
			return nil
		}
		return e.value(v.Elem(), depth)
	case reflect.Bool:
		if v.Bool() {
			e.b = append(e.b, 0xc3)
		} else {
			e.b = append(e.b, 0xc2)
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		e.int(v.Int())
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		e.unsigned(v.Uint())
	case reflect.Float32:
		e.uint(0xca, 4, uint64(math.Float32bits(float32(v.Float()))))
	case reflect.Float64:
		e.uint(0xcb, 8, math.Float64bits(v.Float()))
	case reflect.String:
		e.str(v.String())
	case reflect.Slice, reflect.Array:
		if v.Kind() == reflect.Slice && v.IsNil() {
			e.b = append(e.b, 0xc0)
			return nil
		}
		if v.Type().Elem().Kind() == reflect.Uint8 {
			n := v.Len()
			switch {
			case n <= math.MaxUint8:
				e.uint(0xc4, 1, uint64(n))
			case n <= math.MaxUint16:
				e.uint(0xc5, 2, uint64(n))
			default:
				e.uint(0xc6, 4, uint64(n))
			}
			if v.Kind() == reflect.Slice {
				e.b = append(e.b, v.Bytes()...)
			} else {
				for i := range n {
					e.b = append(e.b, byte(v.Index(i).Uint()))
				}
			}
			return nil
		}
		n := v.Len()
		e.header(0x90, 0xdc, 0xdd, 15, n)
		// The offsets and times of output updates, without reflection.
		var x any
		if v.Kind() == reflect.Slice && v.CanInterface() {
			x = v.Interface()
		}
		switch x := x.(type) {
		case []int64:
			for _, i := range x {
				e.int(i)
			}
			return nil
		case []float64:
			for _, f := range x {
				e.uint(0xcb, 8, math.Float64bits(f))
			}
			return nil
		}
		for i := range n {
			if err := e.value(v.Index(i), depth+1); err != nil {
				return err
			}
		}
	case reflect.Map:
		if v.IsNil() {
			e.b = append(e.b, 0xc0)
			return nil
		}
		if v.Type().Key().Kind() != reflect.String {
			return fmt.Errorf("msgpack: map key type %s is not a string", v.Type().Key())
		}
		keys := v.MapKeys()
		slices.SortFunc(keys, func(a, b reflect.Value) int {
			switch {
			case a.String() < b.String():
				return -1
			case a.String() > b.String():
				return 1
			}
			return 0
		})
		e.header(0x80, 0xde, 0xdf, 15, len(keys))
		for _, k := range keys {
			e.str(k.String())
			if err := e.value(v.MapIndex(k), depth+1); err != nil {
				return err
			}
		}
	default:
		return fmt.Errorf("msgpack: cannot encode a %s", v.Type())
	}
	return nil
}
