//go:build unix

package local_test

import (
	"context"
	"fmt"
	"os"

	"github.com/kilnci/kiln/ci"
	"github.com/kilnci/kiln/worker/local"
)

// A connection driven without a master: commands are written as build
// steps write them, with paths relative to the builder's folder.
func ExampleNewConn() {
	dir, _ := os.MkdirTemp("", "kiln-worker-")
	defer os.RemoveAll(dir)
	conn, err := local.NewConn("example", dir)
	if err != nil {
		panic(err)
	}
	defer conn.Close()
	ctx := context.Background()
	if err := conn.SetBuilders(ctx, []ci.BuilderDir{{Builder: "hello", Dir: "hello"}}); err != nil {
		panic(err)
	}
	cmd := &ci.RemoteCommand{
		Name: "shell",
		Args: map[string]any{"workdir": "build", "command": []any{"echo", "hello, world"}},
		OnUpdate: func(key string, value any) {
			if key == "stdout" {
				fmt.Print(value)
			}
		},
	}
	if err := conn.RunCommand(ctx, "hello", cmd); err != nil {
		panic(err)
	}
	fmt.Println("rc:", cmd.RC)
	// Output:
	// hello, world
	// rc: 0
}
