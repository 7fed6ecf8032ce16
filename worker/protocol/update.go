package protocol

import (
	"fmt"
	"strings"
	"time"
)

// An UpdatePair is one [key, value] pair of an update message's args, in
// the order the worker produced them.
type UpdatePair struct {
	Key   string
	Value any
}

// ParseUpdates reads the args of an update message: a list of [key, value]
// pairs (msgpack_experimental_v7), or a map of them (older workers).
func ParseUpdates(args any) ([]UpdatePair, error) {
	switch a := args.(type) {
	case []any:
		out := make([]UpdatePair, 0, len(a))
		for i, p := range a {
			pair, ok := p.([]any)
			if !ok || len(pair) != 2 {
				return nil, fmt.Errorf("%w: update args[%d] is not a [key, value] pair", ErrBadMessage, i)
			}
			key, ok := pair[0].(string)
			if !ok {
				return nil, fmt.Errorf("%w: update args[%d] has a %T key", ErrBadMessage, i, pair[0])
			}
			out = append(out, UpdatePair{Key: key, Value: pair[1]})
		}
		return out, nil
	case map[string]any:
		out := make([]UpdatePair, 0, len(a))
		for k, v := range a {
			out = append(out, UpdatePair{Key: k, Value: v})
		}
		return out, nil
	}
	return nil, fmt.Errorf("%w: update args are a %T", ErrBadMessage, args)
}

// LinesValue is how msgpack_experimental_v7 carries output: whole lines of
// text, the offset of each line's newline, and each line's time as Unix
// seconds. text must end with a newline; times has one entry per line (the
// last is repeated if there are fewer).
//
// The offsets and times are a []int64 and a []float64 (which Encode writes
// as lists, as it writes []any), so that a large update costs a few
// allocations rather than two per line.
func LinesValue(text string, times []time.Time) []any {
	n := strings.Count(text, "\n")
	offsets := make([]int64, 0, n)
	stamps := make([]float64, 0, n)
	now := time.Now()
	// Lines mostly share their time: it is converted when it changes.
	var last time.Time
	var stamp float64
	for i := 0; ; i++ {
		j := strings.IndexByte(text[i:], '\n')
		if j < 0 {
			break
		}
		i += j
		offsets = append(offsets, int64(i))
		t := now
		if len(times) > 0 {
			t = times[min(len(stamps), len(times)-1)]
		}
		if len(stamps) == 0 || !t.Equal(last) {
			last, stamp = t, float64(t.Unix())+float64(t.Nanosecond())/1e9
		}
		stamps = append(stamps, stamp)
	}
	return []any{text, offsets, stamps}
}

// UpdateText returns the text of a stdout, stderr or header update: a
// string, or v7's [text, offsets, times].
func UpdateText(v any) (string, error) {
	switch x := v.(type) {
	case string:
		return x, nil
	case []byte:
		return string(x), nil
	case []any:
		if len(x) >= 1 {
			if s, ok := x[0].(string); ok {
				return s, nil
			}
			if b, ok := x[0].([]byte); ok {
				return string(b), nil
			}
		}
	}
	return "", fmt.Errorf("%w: output update is a %T, not text", ErrBadMessage, v)
}

// UpdateLog returns the log file name and text of a "log" update:
// [name, text] with text as for UpdateText.
func UpdateLog(v any) (name, text string, err error) {
	pair, ok := v.([]any)
	if !ok || len(pair) != 2 {
		return "", "", fmt.Errorf("%w: log update is not a [name, text] pair", ErrBadMessage)
	}
	name, ok = pair[0].(string)
	if !ok {
		return "", "", fmt.Errorf("%w: log update name is a %T", ErrBadMessage, pair[0])
	}
	text, err = UpdateText(pair[1])
	return name, text, err
}
