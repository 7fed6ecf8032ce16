package pyvalue_test

import (
	"fmt"
	"math"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/kilnci/kiln/internal/pyvalue"
)

type name string

func TestTruthy(t *testing.T) {
	var nilPointer *int
	tests := []struct {
		v    any
		want bool
	}{
		// None and bool
		{nil, false},
		{false, false},
		{true, true},
		// numbers, in every type they arrive as
		{0, false},
		{int64(0), false},
		{uint8(0), false},
		{uint64(0), false},
		{0.0, false},
		{float32(0), false},
		{math.Copysign(0, -1), false},
		{1, true},
		{int64(-1), true},
		{uint64(7), true},
		{0.5, true},
		{math.NaN(), true},
		{math.Inf(-1), true},
		// strings and bytes
		{"", false},
		{name(""), false},
		{[]byte{}, false},
		{[]byte(nil), false},
		{"0", true},
		{"False", true},
		{name("x"), true},
		{[]byte{0}, true},
		// lists
		{[]any{}, false},
		{[]any(nil), false},
		{[]string{}, false},
		{[0]int{}, false},
		{[]any{nil}, true},
		{[]string{""}, true},
		{[1]int{}, true},
		// maps
		{map[string]any{}, false},
		{map[string]any(nil), false},
		{map[string]string{}, false},
		{map[string]any{"": nil}, true},
		{map[string]string{"k": ""}, true},
		// everything else
		{struct{}{}, true},
		{nilPointer, true},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%T(%#v)", tt.v, tt.v), func(t *testing.T) {
			assert.Equal(t, tt.want, pyvalue.Truthy(tt.v))
		})
	}
}
