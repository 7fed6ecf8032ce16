package command

import (
	"os"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A grown pipe takes bigRead bytes from its writer before it blocks; a
// new one, 64 KiB.
func TestGrowPipe(t *testing.T) {
	r, w, err := os.Pipe()
	require.NoError(t, err)
	defer r.Close()
	defer w.Close()
	fill := func() int {
		// Non-blocking writes until the pipe is full.
		fd := int(w.Fd())
		require.NoError(t, syscall.SetNonblock(fd, true))
		buf := make([]byte, 4096)
		total := 0
		for {
			n, err := syscall.Write(fd, buf)
			if err != nil {
				require.ErrorIs(t, err, syscall.EAGAIN)
				return total
			}
			total += n
		}
	}
	assert.Equal(t, 64<<10, fill(), "a new pipe")
	drain := make([]byte, bigRead)
	n, err := r.Read(drain)
	require.NoError(t, err)
	require.Equal(t, 64<<10, n, "one read takes what a new pipe holds")

	require.True(t, growPipe(r, bigRead))
	assert.Equal(t, bigRead, fill(), "a grown pipe")
	n, err = r.Read(drain)
	require.NoError(t, err)
	assert.Equal(t, bigRead, n, "one read takes what a grown pipe holds")
}
