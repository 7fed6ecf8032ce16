// Package propjson encodes and decodes a build's properties in the form
// Buildbot stores and serves them: one JSON object mapping each name to a
// two-element array, [value, source], with the names sorted.
//
// The stores write properties with every buildset, build start and build
// end, so Marshal encodes strings, booleans, integers and nil itself, and
// hands only other values (floats, lists, maps) to encoding/json. Its
// output is byte for byte what encoding/json gives for the same object,
// HTML-safe escaping included.
package propjson

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"unicode/utf8"

	"github.com/kilnci/kiln/ci"
)

// Marshal returns the JSON form of p: {"name": [value, "source"], ...}.
// A value encoding/json cannot encode gives an error naming its property.
func Marshal(p ci.Properties) (string, error) {
	if len(p) == 0 {
		return "{}", nil
	}
	names := make([]string, 0, len(p))
	size := 2
	for name, v := range p {
		names = append(names, name)
		size += len(name) + len(v.Source) + 10
		if s, ok := v.Value.(string); ok {
			size += len(s)
		} else {
			size += 8
		}
	}
	slices.Sort(names)
	b := make([]byte, 0, size)
	b = append(b, '{')
	for i, name := range names {
		if i > 0 {
			b = append(b, ',')
		}
		v := p[name]
		b = appendString(b, name)
		b = append(b, ':', '[')
		var err error
		if b, err = appendValue(b, v.Value); err != nil {
			return "", fmt.Errorf("property %q: %w", name, err)
		}
		b = append(b, ',')
		b = appendString(b, v.Source)
		b = append(b, ']')
	}
	b = append(b, '}')
	return string(b), nil
}

// Unmarshal decodes properties from their JSON form. A source that is not
// a string is read as "".
func Unmarshal(data []byte) (ci.Properties, error) {
	var m map[string][2]any
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, err
	}
	p := make(ci.Properties, len(m))
	for k, pair := range m {
		src, _ := pair[1].(string)
		p[k] = ci.Property{Value: pair[0], Source: src}
	}
	return p, nil
}

// appendValue appends the JSON form of v.
func appendValue(b []byte, v any) ([]byte, error) {
	switch x := v.(type) {
	case nil:
		return append(b, "null"...), nil
	case string:
		return appendString(b, x), nil
	case bool:
		return strconv.AppendBool(b, x), nil
	case int:
		return strconv.AppendInt(b, int64(x), 10), nil
	case int64:
		return strconv.AppendInt(b, x, 10), nil
	case int32:
		return strconv.AppendInt(b, int64(x), 10), nil
	case uint64:
		return strconv.AppendUint(b, x, 10), nil
	}
	j, err := json.Marshal(v)
	if err != nil {
		return b, err
	}
	return append(b, j...), nil
}

const hex = "0123456789abcdef"

// appendString appends s as a JSON string escaped as encoding/json
// escapes it: quotes, backslashes and control characters, the HTML
// characters <, > and &, U+2028 and U+2029, and each byte of invalid
// UTF-8 as U+FFFD.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xf])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// Col returns a database/sql Scanner that decodes a column of properties
// (a string or bytes in their JSON form) into *p; NULL gives none.
func Col(p *ci.Properties) sql.Scanner { return col{p} }

type col struct{ p *ci.Properties }

func (c col) Scan(v any) error {
	var b []byte
	switch x := v.(type) {
	case nil:
		*c.p = ci.Properties{}
		return nil
	case string:
		b = []byte(x)
	case []byte:
		b = x
	default:
		return fmt.Errorf("properties column holds %T", v)
	}
	p, err := Unmarshal(b)
	if err != nil {
		return err
	}
	*c.p = p
	return nil
}
