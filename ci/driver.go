package ci

import (
	"context"
	"fmt"
	"sync"
)

// A StoreOpener opens the store at a path (or data source name).
type StoreOpener func(ctx context.Context, dsn string) (Store, error)

var (
	driversMu sync.Mutex
	drivers   = map[string]StoreOpener{}
)

// RegisterStoreDriver makes a store implementation available by name, as
// database/sql drivers are: package github.com/kilnci/kiln/ci/sqlite
// registers "sqlite" when imported, github.com/kilnci/kiln/ci/postgres
// registers "postgres". The master opens MasterConfig.Database with the
// driver DatabaseDriver names. It panics if the name is taken.
func RegisterStoreDriver(name string, open StoreOpener) {
	driversMu.Lock()
	defer driversMu.Unlock()
	if _, dup := drivers[name]; dup {
		panic(fmt.Sprintf("ci: store driver %q registered twice", name))
	}
	drivers[name] = open
}

func storeDriver(name string) (StoreOpener, bool) {
	driversMu.Lock()
	defer driversMu.Unlock()
	open, ok := drivers[name]
	return open, ok
}
