package webui_test

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kilnci/kiln/internal/testenv"
)

// nginxSite is the part of the nginx configuration that the package
// documentation recommends (see doc.go), with the addresses to fill in.
const nginxSite = `
	location /ci/ {
		proxy_pass http://%s/;
		proxy_http_version 1.1;
		proxy_set_header Host $http_host;
		proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
		proxy_set_header X-Forwarded-Proto $scheme;
		proxy_set_header Connection "";
		proxy_buffering off;
		proxy_cache off;
		proxy_read_timeout 1h;
		proxy_send_timeout 1h;
	}
`

// startNginx runs Debian's nginx as a reverse proxy in front of the
// application at upstream, serving it at /ci/ on addr, and stops it when
// the test ends.
func startNginx(t *testing.T, addr, upstream string) {
	nginx := testenv.NeedTool(t, "nginx")
	dir := t.TempDir()
	user := ""
	if os.Geteuid() == 0 {
		// Workers would run as nobody, who cannot enter the test's folder.
		user = "user root;"
	}
	conf := fmt.Sprintf(`%s
worker_processes 1;
error_log %[2]s/error.log warn;
pid %[2]s/nginx.pid;
events { worker_connections 64; }
http {
	access_log off;
	client_body_temp_path %[2]s/body;
	proxy_temp_path %[2]s/proxy;
	fastcgi_temp_path %[2]s/fastcgi;
	uwsgi_temp_path %[2]s/uwsgi;
	scgi_temp_path %[2]s/scgi;
	server {
		listen %[3]s;
		%[4]s
	}
}
`, user, dir, addr, fmt.Sprintf(nginxSite, upstream))
	path := filepath.Join(dir, "nginx.conf")
	require.NoError(t, os.WriteFile(path, []byte(conf), 0o644))
	cmd := exec.Command(nginx, "-p", dir, "-c", path, "-e", filepath.Join(dir, "error.log"), "-g", "daemon off;")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			log, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			t.Logf("nginx error log:\n%s", log)
		}
	})
	// Wait until it accepts connections.
	for i := 0; ; i++ {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return
		}
		require.Less(t, i, 200, "nginx does not listen on %s", addr)
		time.Sleep(50 * time.Millisecond)
	}
}

// freeAddr returns a local address nothing listens on.
func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	return ln.Addr().String()
}

func TestNginx(t *testing.T) {
	t.Parallel()
	testenv.NeedTool(t, "nginx")
	proxy := freeAddr(t)
	public := "http://" + proxy + "/ci/"
	u := startUI(t, uiOptions{authz: admin, public: func(string) string { return public }})
	startNginx(t, proxy, strings.TrimPrefix(u.root, "http://"))

	get := func(path string) (int, string, http.Header) {
		res, err := http.Get(public + path)
		require.NoError(t, err)
		defer res.Body.Close()
		b, err := io.ReadAll(res.Body)
		require.NoError(t, err)
		return res.StatusCode, string(b), res.Header
	}
	code, body, _ := get("")
	require.Equal(t, http.StatusOK, code, body)
	assert.Contains(t, body, `<link rel="stylesheet" href="/ci/static/kiln.css">`)
	assert.Contains(t, body, `href="/ci/builders/count"`)
	code, body, hdr := get("static/kiln.css")
	assert.Equal(t, http.StatusOK, code)
	assert.Contains(t, hdr.Get("Content-Type"), "text/css")
	assert.Contains(t, body, "--success")

	b := u.m.Build(t, citest_Request("pass", nil))
	code, _, _ = get(strings.TrimPrefix(u.m.BuildURL("pass", b.Record.Number), public))
	assert.Equal(t, http.StatusOK, code, "the build's public address reaches its page")

	// A browser's force, with its Origin: the proxy passes the Host on.
	form := "scheduler=force&lines=0"
	req, err := http.NewRequest("POST", public+"builders/count/force", strings.NewReader(form))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", "http://"+proxy)
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	req.SetBasicAuth(alice, alicePW)
	res, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
	require.NoError(t, err)
	res.Body.Close()
	assert.Equal(t, http.StatusSeeOther, res.StatusCode)
	assert.Equal(t, "/ci/builders/count/builds/1", res.Header.Get("Location"), "the new build's page")

	// Live logs reach the client as they are written, through the proxy.
	followLiveLog(t, u, public)
}
