package ci

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"
)

// appendStore is a LogStore that keeps what is appended, one call per
// entry, and can hold AppendLog until released.
type appendStore struct {
	LogStore // not called

	mu      sync.Mutex
	appends []string
	text    strings.Builder
	hold    chan struct{} // if not nil, AppendLog waits for a receive on it
	entered chan struct{} // if not nil, AppendLog sends on it first
	discard bool          // count the bytes only
	size    int
}

func (s *appendStore) AppendLog(ctx context.Context, logID int64, text string) (int, int, error) {
	if s.entered != nil {
		s.entered <- struct{}{}
	}
	if s.hold != nil {
		<-s.hold
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.size += len(text)
	if !s.discard {
		s.appends = append(s.appends, text)
		s.text.WriteString(text)
	}
	return 0, 0, nil
}

func (s *appendStore) FinishLog(ctx context.Context, logID int64, text string) (int, int, error) {
	if text == "" {
		return -1, -1, nil
	}
	return s.AppendLog(ctx, logID, text)
}

// logLines returns n lines of 99 characters, each with its number.
func logLines(from, n int) string {
	var b strings.Builder
	for i := from; i < from+n; i++ {
		line := strings.Repeat("a", 90) + "-" + strings.Repeat("0", 8)
		num := []byte(line)
		for j, k := len(num)-1, i; k > 0; j, k = j-1, k/10 {
			num[j] = byte('0' + k%10)
		}
		b.Write(num)
		b.WriteByte('\n')
	}
	return b.String()
}

// A log written faster than it is stored goes to the store in large
// appends, one at a time, and its writers wait once logMaxPending is
// pending; nothing is lost or reordered.
func TestLogWriter_Busy(t *testing.T) {
	store := &appendStore{hold: make(chan struct{}), entered: make(chan struct{})}
	w := newLogWriter(Log{ID: 1, Type: LogStream}, store, SystemClock{}, nil, nil)
	w.interval = time.Hour // flushes by size only

	block := logLines(0, 650) // about 64 KiB, as a worker sends
	var want strings.Builder
	blocks := 0
	written := make(chan int, 1000)
	go func() {
		for i := range 100 {
			w.AddStdout(block)
			written <- i
		}
		close(written)
	}()
	for range 100 {
		want.WriteString(strings.ReplaceAll("\n"+block, "\na", "\noa")[1:])
	}

	// The first flush by size starts, and is held in the store.
	<-store.entered
	// The writer goes on until logMaxPending is pending, then waits.
	deadline := time.After(time.Minute)
	for {
		select {
		case _, ok := <-written:
			if !ok {
				t.Fatal("all the blocks were taken while the store held the first append")
			}
			blocks++
			continue
		case <-deadline:
			t.Fatal("the writer did not wait")
		case <-time.After(100 * time.Millisecond):
		}
		break
	}
	w.mu.Lock()
	pending := len(w.pending)
	w.mu.Unlock()
	if pending < logMaxPending || pending > logMaxPending+len(block)+len(block)/90 {
		t.Fatalf("%d bytes pending while the writer waits, want about %d", pending, logMaxPending)
	}
	if max := 2*logMaxPending/len(block) + 2; blocks > max {
		t.Fatalf("%d blocks written while the store held the first append, want at most %d", blocks, max)
	}
	// Released, the store gets what waited in one append.
	go func() {
		for range store.entered {
		}
	}()
	close(store.hold)
	for range written {
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	close(store.entered)
	store.mu.Lock()
	defer store.mu.Unlock()
	if store.text.String() != want.String() {
		t.Fatalf("stored %d bytes, not the %d written in order", store.text.Len(), want.Len())
	}
	if len(store.appends) < 2 || len(store.appends[1]) < logMaxPending {
		t.Fatalf("the second append has %d bytes, want what waited during the first, at least %d", len(store.appends[1]), logMaxPending)
	}
	for i, a := range store.appends[:len(store.appends)-1] {
		if len(a) < logFlushSize {
			t.Errorf("append %d of %d has %d bytes, less than %d", i, len(store.appends), len(a), logFlushSize)
		}
	}
}

// BenchmarkLogWriter measures a stream log written in blocks of about
// 64 KiB of 99-character lines, as a worker sends a fast command's
// output, into a store that only counts them.
func BenchmarkLogWriter(b *testing.B) {
	block := logLines(0, 650)
	store := &appendStore{discard: true}
	b.SetBytes(int64(len(block)))
	b.ReportAllocs()
	w := newLogWriter(Log{ID: 1, Type: LogStream}, store, SystemClock{}, nil, nil)
	for b.Loop() {
		w.AddStdout(block)
	}
	if err := w.Close(); err != nil {
		b.Fatal(err)
	}
	if want := b.N * (len(block) + 650); store.size != want {
		b.Fatalf("stored %d bytes, want %d", store.size, want)
	}
}
