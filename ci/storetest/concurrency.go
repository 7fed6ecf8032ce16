package storetest

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kilnci/kiln/ci"
)

func testConcurrency(t *testing.T, open func(*testing.T) *fixture) {
	t.Run("AppendLog", func(t *testing.T) {
		f := open(t)
		b := f.builder("b")
		build := f.start(b.ID, f.request(b.ID))
		const writers, appends = 8, 40
		logs := make([]*ci.Log, writers)
		for i := range logs {
			logs[i] = f.log(f.step(build.ID, i, fmt.Sprint("step", i)).ID, "stdio")
		}
		errs := make(chan error, 2*writers)
		for i, l := range logs {
			go func() {
				for j := range appends {
					text := lines(fmt.Sprintf("o%d-%d-", i, j), 0, j%5+1)
					if _, _, err := f.s.AppendLog(f.ctx, l.ID, text); err != nil {
						errs <- err
						return
					}
				}
				errs <- finish(f, l.ID)
			}()
			// A reader follows each log while it is written.
			go func() {
				seen := 0
				for {
					gl, err := f.s.GetLog(f.ctx, l.ID)
					if err != nil {
						errs <- err
						return
					}
					text, err := f.s.LogLines(f.ctx, l.ID, seen, -1)
					if err != nil {
						errs <- err
						return
					}
					for _, line := range splitLines(text) {
						if want := fmt.Sprintf("o%d-", i); len(line) < len(want) || line[:len(want)] != want {
							errs <- fmt.Errorf("log %d: line %d is %q", i, seen, line)
							return
						}
						seen++
					}
					if gl.Complete {
						// All lines were there before this last read.
						if seen != gl.NumLines {
							err = fmt.Errorf("log %d: read %d lines of %d", i, seen, gl.NumLines)
						}
						errs <- err
						return
					}
				}
			}()
		}
		for range 2 * writers {
			require.NoError(t, <-errs)
		}
		for i, l := range logs {
			want := ""
			for j := range appends {
				want += lines(fmt.Sprintf("o%d-%d-", i, j), 0, j%5+1)
			}
			text, err := f.s.LogLines(f.ctx, l.ID, 0, -1)
			require.NoError(t, err)
			assert.Equal(t, want, text, "log %d", i)
		}
	})
	t.Run("StartBuild", func(t *testing.T) {
		f := open(t)
		b1, b2 := f.builder("b1"), f.builder("b2")
		const requests, starters = 20, 6
		var reqs []*ci.BuildRequest
		for range requests {
			_, rs := f.buildset(at(0), 0, b1.ID, b2.ID)
			reqs = append(reqs, rs...)
		}
		type started struct {
			build *ci.Build
			err   error
		}
		results := make(chan started, starters*len(reqs))
		for i := range starters {
			go func() {
				// Each starter tries every request, in its own order.
				for k := range reqs {
					r := reqs[(k*(i+1)+i)%len(reqs)]
					b := &ci.Build{BuilderID: r.BuilderID, StartedAt: at(i)}
					err := f.s.StartBuild(f.ctx, b, []int64{r.ID})
					results <- started{b, err}
				}
			}()
		}
		claimed := map[int64]int64{} // request -> build
		numbers := map[int64][]int{}
		for range starters * len(reqs) {
			s := <-results
			if s.err != nil {
				require.ErrorIs(t, s.err, ci.ErrConflict)
				continue
			}
			_, dup := claimed[s.build.BuildRequestID]
			require.False(t, dup, "request %d claimed twice", s.build.BuildRequestID)
			claimed[s.build.BuildRequestID] = s.build.ID
			numbers[s.build.BuilderID] = append(numbers[s.build.BuilderID], s.build.Number)
		}
		assert.Len(t, claimed, len(reqs), "every request is claimed once")
		for _, b := range []*ci.Builder{b1, b2} {
			assert.ElementsMatch(t, seq(1, requests), numbers[b.ID], "builder %s numbers its builds 1 to %d", b.Name, requests)
		}
		for rid, bid := range claimed {
			assert.Equal(t, bid, f.getRequest(rid).BuildID)
		}
		assert.Empty(t, f.pendingIDs())
	})
}

func seq(from, to int) []int {
	var s []int
	for i := from; i <= to; i++ {
		s = append(s, i)
	}
	return s
}

func splitLines(text string) []string {
	var out []string
	for text != "" {
		i := 0
		for i < len(text) && text[i] != '\n' {
			i++
		}
		out = append(out, text[:i])
		text = text[min(i+1, len(text)):]
	}
	return out
}

func finish(f *fixture, logID int64) error {
	_, _, err := f.s.FinishLog(f.ctx, logID, "")
	return err
}
