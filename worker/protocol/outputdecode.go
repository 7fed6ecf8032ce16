package protocol

// The decoding particular to the protocol, apart from the MessagePack
// codec of msgpack.go: the output carried by msgpack_experimental_v7's
// updates ([text, offsets, times]) is decoded into an []int64 and a
// []float64 rather than two values per line, which ParseMessage asks for
// through the decoder's updates flag; with its share flag
// (ParseMessageShared), the text shares the frame and the offsets and
// times are read past. Anything that is not the expected shape is decoded
// as the codec decodes any value.

import (
	"encoding/binary"
	"math"
)

// arrayHeader reads the header of an array, if the next value is one, and
// returns its length; otherwise it reads nothing and returns -1.
func (d *decoder) arrayHeader() (int, error) {
	if d.left() == 0 {
		return -1, nil
	}
	switch c := d.b[d.off]; {
	case c&0xf0 == 0x90:
		d.off++
		return int(c & 0x0f), nil
	case c == 0xdc || c == 0xdd:
		d.off++
		return d.length(2<<(c-0xdc), 1)
	}
	return -1, nil
}

// updateArgs decodes the args of a message as value does, except that in
// a list of [key, value] pairs, the value of a "stdout", "stderr" or
// "header" pair, and the second element of a "log" pair's value, go
// through outputValue: the output of msgpack_experimental_v7's updates.
func (d *decoder) updateArgs(depth int) (any, error) {
	start := d.off
	n, err := d.arrayHeader()
	if err != nil || n < 0 || n > d.left() || depth+2 > MaxDepth {
		d.off = start
		return d.value(depth)
	}
	args := make([]any, n)
	for i := range args {
		pairStart := d.off
		if m, err := d.arrayHeader(); err != nil || m != 2 {
			d.off = pairStart
			if args[i], err = d.value(depth + 1); err != nil {
				return nil, err
			}
			continue
		}
		key, err := d.value(depth + 2)
		if err != nil {
			return nil, err
		}
		var v any
		switch key {
		case "stdout", "stderr", "header":
			v, err = d.outputValue(depth + 2)
		case "log":
			v, err = d.logValue(depth + 2)
		default:
			v, err = d.value(depth + 2)
		}
		if err != nil {
			return nil, err
		}
		args[i] = []any{key, v}
	}
	return args, nil
}

// logValue decodes a "log" update's value, [name, output], with the
// output as outputValue does.
func (d *decoder) logValue(depth int) (any, error) {
	start := d.off
	if n, err := d.arrayHeader(); err != nil || n != 2 || depth+1 > MaxDepth {
		d.off = start
		return d.value(depth)
	}
	name, err := d.value(depth + 1)
	if err != nil {
		return nil, err
	}
	out, err := d.outputValue(depth + 1)
	if err != nil {
		return nil, err
	}
	return []any{name, out}, nil
}

// outputValue decodes the output of an update as value does, except that
// v7's [text, offsets, times] comes back with the offsets as an []int64
// and the times as a []float64 (as LinesValue makes them) when they are
// all such numbers: a large update then costs a few allocations rather
// than two per line.
func (d *decoder) outputValue(depth int) (any, error) {
	start := d.off
	if n, err := d.arrayHeader(); err != nil || n != 3 || depth+1 > MaxDepth {
		d.off = start
		return d.text(depth)
	}
	text, err := d.text(depth + 1)
	if err != nil {
		return nil, err
	}
	v := []any{text, nil, nil}
	if d.share {
		if v[1], err = d.skipNumbers(depth + 1); err != nil {
			return nil, err
		}
		v[2], err = d.skipNumbers(depth + 1)
		return v, err
	}
	if v[1], err = d.int64s(depth + 1); err != nil {
		return nil, err
	}
	if v[2], err = d.float64s(depth + 1); err != nil {
		return nil, err
	}
	return v, nil
}

// text decodes output text as value does, except that with d.share its
// strings share the frame's memory (str).
func (d *decoder) text(depth int) (any, error) {
	if !d.share {
		return d.value(depth)
	}
	d.inText = true
	v, err := d.value(depth)
	d.inText = false
	return v, err
}

// skipNumbers reads past an array of integers and floats and returns nil;
// anything else is decoded as value does.
func (d *decoder) skipNumbers(depth int) (any, error) {
	start := d.off
	n, err := d.arrayHeader()
	if err != nil || n < 0 {
		d.off = start
		return d.value(depth)
	}
	for range n {
		size := -1
		if d.left() > 0 {
			switch c := d.b[d.off]; {
			case c <= 0x7f, c >= 0xe0:
				size = 1
			case c >= 0xcc && c <= 0xd3: // uint8 to uint64, int8 to int64
				size = 1 + 1<<((c-0xcc)&3)
			case c == 0xca:
				size = 5
			case c == 0xcb:
				size = 9
			}
		}
		if size < 0 || size > d.left() {
			d.off = start
			return d.value(depth)
		}
		d.off += size
	}
	return nil, nil
}

// int64s decodes an array of integers within int64's range as an []int64;
// anything else as value does.
func (d *decoder) int64s(depth int) (any, error) {
	start := d.off
	n, err := d.arrayHeader()
	if err != nil || n < 0 {
		d.off = start
		return d.value(depth)
	}
	a := make([]int64, n)
	for i := range a {
		if d.left() == 0 {
			d.off = start
			return d.value(depth)
		}
		c := d.b[d.off]
		switch {
		case c <= 0x7f:
			d.off++
			a[i] = int64(c)
			continue
		case c >= 0xe0:
			d.off++
			a[i] = int64(int8(c))
			continue
		case c >= 0xcc && c <= 0xd3:
			// Read here, not through value, which would box each one.
			if x, ok := d.intAt(c); ok {
				a[i] = x
				continue
			}
		}
		d.off = start
		return d.value(depth)
	}
	return a, nil
}

// float64s decodes an array of floats as a []float64; anything else as
// value does.
func (d *decoder) float64s(depth int) (any, error) {
	start := d.off
	n, err := d.arrayHeader()
	if err != nil || n < 0 {
		d.off = start
		return d.value(depth)
	}
	a := make([]float64, n)
	for i := range a {
		if d.left() == 0 {
			d.off = start
			return d.value(depth)
		}
		switch c := d.b[d.off]; {
		case c == 0xcb && d.left() >= 9:
			a[i] = math.Float64frombits(binary.BigEndian.Uint64(d.b[d.off+1:]))
			d.off += 9
		case c == 0xca && d.left() >= 5:
			a[i] = float64(math.Float32frombits(binary.BigEndian.Uint32(d.b[d.off+1:])))
			d.off += 5
		default:
			d.off = start
			return d.value(depth)
		}
	}
	return a, nil
}

// intAt reads the integer of type c (0xcc to 0xd3: uint8 to int64) at the
// offset, and reports false, reading nothing, if it is not whole or does
// not fit an int64.
func (d *decoder) intAt(c byte) (int64, bool) {
	var n int
	if c <= 0xcf {
		n = 1 << (c - 0xcc)
	} else {
		n = 1 << (c - 0xd0)
	}
	if d.left() < 1+n {
		return 0, false
	}
	p := d.b[d.off+1 : d.off+1+n]
	var x int64
	switch c {
	case 0xcc:
		x = int64(p[0])
	case 0xcd:
		x = int64(binary.BigEndian.Uint16(p))
	case 0xce:
		x = int64(binary.BigEndian.Uint32(p))
	case 0xcf:
		u := binary.BigEndian.Uint64(p)
		if u > math.MaxInt64 {
			return 0, false
		}
		x = int64(u)
	case 0xd0:
		x = int64(int8(p[0]))
	case 0xd1:
		x = int64(int16(binary.BigEndian.Uint16(p)))
	case 0xd2:
		x = int64(int32(binary.BigEndian.Uint32(p)))
	case 0xd3:
		x = int64(binary.BigEndian.Uint64(p))
	}
	d.off += 1 + n
	return x, true
}
