package sqlite_test

import (
	"context"
	"database/sql"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/kilnci/kiln/ci"
	"github.com/kilnci/kiln/ci/sqlite"
)

// A build's start is a progress write: StartBuild returns before its
// transaction is committed. Another connection to the file, as another
// process would open, sees it once it is committed: within a few
// milliseconds, or as soon as Sync returns. The store's own reads see it
// at once.
func ExampleStore_Sync() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "kiln-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "state.sqlite")
	s, err := sqlite.Open(ctx, path)
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	b, err := s.EnsureBuilder(ctx, "pkg", "", nil)
	if err != nil {
		log.Fatal(err)
	}
	reqs, err := s.AddBuildset(ctx, &ci.Buildset{Reason: "example", SubmittedAt: time.Now()}, []int64{b.ID}, 0)
	if err != nil {
		log.Fatal(err)
	}
	build := &ci.Build{BuilderID: b.ID, StartedAt: time.Now()}
	if err := s.StartBuild(ctx, build, []int64{reqs[0].ID}); err != nil {
		log.Fatal(err)
	}
	if err := s.Sync(ctx); err != nil {
		log.Fatal(err)
	}
	other, err := sql.Open("sqlite", path+"?_pragma=query_only(ON)")
	if err != nil {
		log.Fatal(err)
	}
	defer other.Close()
	var n int
	if err := other.QueryRow(`SELECT COUNT(*) FROM builds`).Scan(&n); err != nil {
		log.Fatal(err)
	}
	fmt.Println("another connection sees", n, "build")

	// The store's own reads commit what they would miss first.
	got, err := s.GetBuild(ctx, build.ID)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("the store reads build number", got.Number)

	// Output:
	// another connection sees 1 build
	// the store reads build number 1
}
