// Package pyvalue interprets Go values as Python would, where the master
// and the worker must agree with Buildbot: property values in the master's
// interpolations, command arguments decoded from MessagePack in the
// worker, the worker's own description in the master. It imports only the
// standard library, so that both sides of the wire may use it.
package pyvalue

import "reflect"

// Truthy reports Python's truth value of v: nil (None), false, zero
// numbers, empty strings, and empty lists, byte strings and maps (dicts)
// are false; everything else is true. The rule goes by kind, so that it
// holds for every Go type a value may arrive as: []string and []any,
// map[string]string and map[string]any, int and int64 and uint8, named
// string types. NaN is true, as it is in Python. A pointer or a struct
// is true, even a nil pointer (Python has no such value: nothing
// decoded or rendered is one).
func Truthy(v any) bool {
	switch x := v.(type) {
	case nil:
		return false
	case bool:
		return x
	case string:
		return x != ""
	case int64:
		return x != 0
	case float64:
		return x != 0
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Bool:
		return rv.Bool()
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return rv.Int() != 0
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return rv.Uint() != 0
	case reflect.Float32, reflect.Float64:
		return rv.Float() != 0
	case reflect.String, reflect.Slice, reflect.Map, reflect.Array:
		return rv.Len() > 0
	}
	return true
}
