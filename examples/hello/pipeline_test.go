package main

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/kilnci/kiln/ci"
	"github.com/kilnci/kiln/ci/citest"
)

// TestPipeline is the README's test, as written there: the README's
// master builds repo, a small Go repository that TestMain makes.
func TestPipeline(t *testing.T) {
	m := citest.Start(t, config(repo))
	b := m.Build(t, citest.Request{Builder: "test", SourceStamp: ci.SourceStamp{Branch: "main"}})
	require.Equal(t, ci.Success, b.Results())
	require.Contains(t, b.Log("test", "stdio"), "ok")
}
