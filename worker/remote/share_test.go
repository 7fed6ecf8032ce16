package remote

import (
	"reflect"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/require"
)

func TestSharedInfo(t *testing.T) {
	info := func(basedir, version string) map[string]any {
		return map[string]any{
			"basedir": basedir, "system": "posix", "numcpus": int64(2),
			"worker_commands": map[string]any{"shell": version, "stat": version},
			"environ":         map[string]any{"PATH": "/bin"},
		}
	}
	var s sharedInfo
	a, b, c := info("/w/a", "3.1"), info("/w/b", "3.1"), info("/w/c", "2.0")
	sa, envA := s.share(a, map[string]string{"PATH": "/bin"})
	sb, envB := s.share(b, map[string]string{"PATH": "/bin"})
	sc, envC := s.share(c, map[string]string{"PATH": "/usr/bin"})

	require.Equal(t, a, info("/w/a", "3.1"), "the decoded info is left as it was")
	require.Equal(t, a, sa)
	require.Equal(t, b, sb)
	require.Equal(t, c, sc)
	require.Equal(t, map[string]string{"PATH": "/bin"}, envA)
	require.Equal(t, envA, envB)

	ptr := func(m map[string]any, k string) uintptr { return reflect.ValueOf(m[k]).Pointer() }
	require.Equal(t, ptr(sa, "worker_commands"), ptr(sb, "worker_commands"), "equal worker_commands are one map")
	require.NotEqual(t, ptr(sa, "worker_commands"), ptr(a, "worker_commands"))
	require.NotEqual(t, ptr(sa, "worker_commands"), ptr(sc, "worker_commands"), "different worker_commands are not shared")
	require.Equal(t, map[string]any{"shell": "2.0", "stat": "2.0"}, sc["worker_commands"])

	require.Equal(t, reflect.ValueOf(envA).Pointer(), reflect.ValueOf(envB).Pointer(), "equal environments are one map")
	require.Equal(t, map[string]string{"PATH": "/usr/bin"}, envC)
	require.NotEqual(t, reflect.ValueOf(envA).Pointer(), reflect.ValueOf(envC).Pointer(), "different environments are not shared")

	// A string in an interface value is a pointer to its header: equal
	// values of the infos are one.
	data := func(m map[string]any, k string) unsafe.Pointer {
		v := m[k]
		return (*[2]unsafe.Pointer)(unsafe.Pointer(&v))[1]
	}
	require.Equal(t, data(sa, "system"), data(sc, "system"), "equal strings are one interface value")
	require.NotEqual(t, data(sa, "basedir"), data(sb, "basedir"))
}
