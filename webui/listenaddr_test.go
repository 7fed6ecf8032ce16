package webui_test

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/kilnci/kiln/ci"
	"github.com/kilnci/kiln/webui"
)

func TestServer_ListenAddr(t *testing.T) {
	public := &ci.MasterConfig{PublicURL: "https://ci.example.org/"}
	assert.Equal(t, webui.DefaultAddr, (&webui.Server{}).ListenAddr(&ci.MasterConfig{}))
	assert.Equal(t, "127.0.0.1:8010", (&webui.Server{}).ListenAddr(public), "behind a proxy, loopback only")
	assert.Equal(t, ":9000", (&webui.Server{Addr: ":9000"}).ListenAddr(public))
}
