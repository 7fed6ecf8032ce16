package command

import (
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/kilnci/kiln/internal/pyvalue"
)

// Argument access. Arguments arrive decoded from MessagePack (int64,
// uint64, float64, string, []byte, bool, nil, []any, map[string]any) or
// straight from Go code (int, []string...); both are accepted.

// str returns the string argument key; missing or nil is "", false.
func (r *run) str(key string) (string, bool, error) {
	v, ok := r.args[key]
	if !ok || v == nil {
		return "", false, nil
	}
	switch x := v.(type) {
	case string:
		return x, true, nil
	case []byte:
		return string(x), true, nil
	}
	return "", false, fmt.Errorf("%s: argument %q is %T, want a string", r.name, key, v)
}

// path returns the path argument key, resolved as the package
// documentation says.
func (r *run) path(key string) (string, error) {
	p, ok, err := r.str(key)
	if err != nil {
		return "", err
	}
	if !ok {
		return "", fmt.Errorf("%s: missing argument %q", r.name, key)
	}
	return r.resolve(p)
}

// paths returns the list-of-paths argument key, resolved.
func (r *run) paths(key string) ([]string, error) {
	v := r.args[key]
	var list []string
	switch x := v.(type) {
	case []string:
		list = x
	case []any:
		for i, e := range x {
			s, ok := e.(string)
			if !ok {
				return nil, fmt.Errorf("%s: argument %q[%d] is %T, want a string", r.name, key, i, e)
			}
			list = append(list, s)
		}
	case string:
		list = []string{x}
	default:
		return nil, fmt.Errorf("%s: argument %q is %T, want a list of strings", r.name, key, v)
	}
	out := make([]string, len(list))
	for i, p := range list {
		rp, err := r.resolve(p)
		if err != nil {
			return nil, err
		}
		out[i] = rp
	}
	return out, nil
}

// number returns the numeric argument key; missing or nil is ok == false.
func (r *run) number(key string) (n number, ok bool, err error) {
	v, present := r.args[key]
	if !present || v == nil {
		return number{}, false, nil
	}
	n, ok = toNumber(v)
	if !ok {
		return number{}, false, fmt.Errorf("%s: argument %q is %T, want a number", r.name, key, v)
	}
	return n, true, nil
}

// truthy returns the boolean argument key in Python's sense, def when it
// is missing.
func (r *run) truthy(key string, def bool) bool {
	v, ok := r.args[key]
	if !ok {
		return def
	}
	return pyvalue.Truthy(v)
}

// A number is a numeric argument, remembering whether it was an integer so
// that headers print it as Python would.
type number struct {
	f     float64
	isInt bool
}

func toNumber(v any) (number, bool) {
	switch x := v.(type) {
	case int:
		return number{float64(x), true}, true
	case int8:
		return number{float64(x), true}, true
	case int16:
		return number{float64(x), true}, true
	case int32:
		return number{float64(x), true}, true
	case int64:
		return number{float64(x), true}, true
	case uint:
		return number{float64(x), true}, true
	case uint8:
		return number{float64(x), true}, true
	case uint16:
		return number{float64(x), true}, true
	case uint32:
		return number{float64(x), true}, true
	case uint64:
		return number{float64(x), true}, true
	case float32:
		return number{float64(x), false}, true
	case float64:
		return number{x, false}, true
	case bool: // Python's bool is an int
		if x {
			return number{1, true}, true
		}
		return number{0, true}, true
	}
	return number{}, false
}

func (n number) duration() time.Duration {
	return time.Duration(n.f * float64(time.Second))
}

// String formats n as Python's str() does.
func (n number) String() string {
	if n.isInt {
		return strconv.FormatInt(int64(n.f), 10)
	}
	return pyFloat(n.f)
}

// pyFloat formats f as Python's repr(float).
func pyFloat(f float64) string {
	switch {
	case math.IsInf(f, 1):
		return "inf"
	case math.IsInf(f, -1):
		return "-inf"
	case math.IsNaN(f):
		return "nan"
	}
	exp := 0
	if f != 0 {
		exp = int(math.Floor(math.Log10(math.Abs(f))))
	}
	if exp < -4 || exp >= 16 {
		// Both write at least two exponent digits: "1e+16", "1.5e-05".
		return strconv.FormatFloat(f, 'e', -1, 64)
	}
	s := strconv.FormatFloat(f, 'f', -1, 64)
	for _, c := range s {
		if c == '.' {
			return s
		}
	}
	return s + ".0"
}

// toInt returns an integer argument value.
func toInt(v any) (int64, bool) {
	n, ok := toNumber(v)
	if !ok || !n.isInt {
		return 0, false
	}
	return int64(n.f), true
}
