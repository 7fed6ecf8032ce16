//go:build unix

package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"database/sql"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/bcrypt"

	"github.com/kilnci/kiln/internal/pty"
	"github.com/kilnci/kiln/internal/testenv"
)

// TestDeploy_Units checks the systemd units with systemd-analyze: the only
// complaints allowed are the binaries, which are not installed here.
func TestDeploy_Units(t *testing.T) {
	testenv.NeedTool(t, "systemd-analyze")
	dir := t.TempDir()
	for _, unit := range []struct{ file, as string }{
		{"kiln-master.service", "kiln-master.service"},
		{"kiln-worker@.service", "kiln-worker@amd64.service"},
	} {
		b, err := os.ReadFile(filepath.Join("deploy", unit.file))
		require.NoError(t, err)
		path := filepath.Join(dir, unit.as)
		require.NoError(t, os.WriteFile(path, b, 0o644))
		out, _ := exec.Command("systemd-analyze", "verify", "--man=no", path).CombinedOutput()
		for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			if line == "" {
				continue
			}
			assert.Regexp(t, `: Command /srv/buildbot/bin/(ideascube|kiln-worker) is not executable`, line, "systemd-analyze on %s", unit.file)
		}
	}
	master, err := os.ReadFile(filepath.Join("deploy", "kiln-master.service"))
	require.NoError(t, err)
	assert.Contains(t, string(master), "ExecStart=/srv/buildbot/bin/ideascube -basedir /srv/buildbot/master -http 127.0.0.1:8010 -worker-cert /srv/buildbot/master/worker-port.pem -worker-key /srv/buildbot/master/worker-port-key.pem\n")
	worker, err := os.ReadFile(filepath.Join("deploy", "kiln-worker@.service"))
	require.NoError(t, err)
	assert.Contains(t, string(worker), "ExecStart=/srv/buildbot/bin/kiln-worker start --nodaemon /srv/buildbot/worker-%I\n")
}

// TestDeploy_Nginx serves a master through Debian's nginx with the site
// file of the guide (its port and upstream changed for the test).
func TestDeploy_Nginx(t *testing.T) {
	nginx := testenv.NeedTool(t, "nginx")
	testenv.NeedTool(t, "reprepro")
	testenv.NeedTool(t, "gpg")
	site, err := os.ReadFile(filepath.Join("deploy", "nginx-kiln"))
	require.NoError(t, err)

	base := t.TempDir()
	secrets := "IDEASCUBE_WORKER_AMD64_PASSWORD=a\nIDEASCUBE_WORKER_ARMHF_PASSWORD=b\nIDEASCUBE_ADMIN_USER=admin\n" +
		"IDEASCUBE_ADMIN_PASSWORD=pw\nIDEASCUBE_GITHUB_SECRET=gh\nIDEASCUBE_GITLAB_SECRET=gl\n"
	require.NoError(t, os.WriteFile(filepath.Join(base, "secrets.env"), []byte(secrets), 0o600))
	httpAddr, workerAddr, plainAddr, proxyAddr, metricsAddr := freeAddr(t), freeAddr(t), freeAddr(t), freeAddr(t), freeAddr(t)
	master := start(t, nil, nil, bins.master, "-basedir", base, "-http", httpAddr, "-workers", workerAddr, "-url", "https://"+proxyAddr+"/", "-archive-unsigned", "-metrics", metricsAddr)

	// The site as the guide installs it, on the test's ports, with a
	// certificate of the test's.
	certFile, keyFile := filepath.Join(base, "site-cert.pem"), filepath.Join(base, "site-key.pem")
	writeCert(t, certFile, keyFile)
	conf := string(site)
	for old, repl := range map[string]string{
		"\tlisten 80;\n": "\tlisten " + plainAddr + ";\n", "\tlisten [::]:80;\n": "", "\tlisten [::]:443 ssl http2;\n": "",
		"\tlisten 443 ssl http2;\n":                                  "\tlisten " + proxyAddr + " ssl http2;\n",
		"/etc/letsencrypt/live/buildbot.ideascube.org/fullchain.pem": certFile,
		"/etc/letsencrypt/live/buildbot.ideascube.org/privkey.pem":   keyFile,
		"http://127.0.0.1:8010/":                                     "http://" + httpAddr + "/",
	} {
		require.Contains(t, conf, old, "the site has %q", old)
		conf = strings.ReplaceAll(conf, old, repl)
	}
	prefix := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(prefix, "logs"), 0o755))
	main := "pid " + filepath.Join(prefix, "nginx.pid") + ";\nerror_log " + filepath.Join(prefix, "logs", "error.log") + ";\n" +
		"events {}\nhttp {\n\taccess_log off;\n\tclient_body_temp_path " + prefix + "/body;\n\tproxy_temp_path " + prefix + "/proxy;\n" +
		"\tfastcgi_temp_path " + prefix + "/fastcgi;\n\tuwsgi_temp_path " + prefix + "/uwsgi;\n\tscgi_temp_path " + prefix + "/scgi;\n" + conf + "}\n"
	confPath := filepath.Join(prefix, "nginx.conf")
	require.NoError(t, os.WriteFile(confPath, []byte(main), 0o644))
	out, err := exec.Command(nginx, "-t", "-p", prefix, "-c", confPath).CombinedOutput()
	require.NoError(t, err, "nginx -t: %s", out)

	cmd := exec.Command(nginx, "-p", prefix, "-c", confPath, "-g", "daemon off;")
	nout, err := os.Create(filepath.Join(prefix, "nginx.out"))
	require.NoError(t, err)
	defer nout.Close()
	cmd.Stdout, cmd.Stderr = nout, nout
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		cmd.Wait()
	})
	var ans struct {
		Builders []struct {
			Name string `json:"name"`
		} `json:"builders"`
	}
	pool := x509.NewCertPool()
	pem, err := os.ReadFile(certFile)
	require.NoError(t, err)
	pool.AppendCertsFromPEM(pem)
	client := &http.Client{
		Transport:     &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	deadline := time.Now().Add(time.Minute)
	for {
		resp, err := client.Get("https://" + proxyAddr + "/api/v2/builders")
		if err == nil && resp.StatusCode == http.StatusOK {
			require.NoError(t, json.NewDecoder(resp.Body).Decode(&ans))
			resp.Body.Close()
			break
		}
		if err == nil {
			resp.Body.Close()
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(nout.Name())
			t.Fatalf("nothing through nginx: %v\n%s", err, b)
		}
		time.Sleep(50 * time.Millisecond)
	}
	require.Len(t, ans.Builders, 3)

	// A second master on the same folder stops at once, naming the first.
	out, err = exec.Command(bins.master, "-basedir", base, "-http", freeAddr(t), "-workers", freeAddr(t), "-archive-unsigned").CombinedOutput()
	require.Error(t, err)
	abs, _ := filepath.Abs(base)
	assert.Contains(t, string(out), fmt.Sprintf("ideascube: the folder is in use by another master: %s is locked by process %d", abs, master.cmd.Process.Pid))
	// The home page, through the proxy, links under the public URL.
	resp, err := client.Get("https://" + proxyAddr + "/")
	require.NoError(t, err)
	defer resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	// Plain HTTP is sent to HTTPS.
	resp, err = client.Get("http://" + plainAddr + "/builders/build-amd64-pkg?x=1")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusMovedPermanently, resp.StatusCode)
	host, _, _ := net.SplitHostPort(plainAddr)
	assert.Equal(t, "https://"+host+"/builders/build-amd64-pkg?x=1", resp.Header.Get("Location"))
	// The archive, through the proxy, at the path of the guide's APT line
	// (once the master has prepared it: 503 until then).
	var release []byte
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(50 * time.Millisecond) {
		resp, err = client.Get("https://" + proxyAddr + "/debian/dists/jessie/Release")
		require.NoError(t, err)
		release, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable || time.Now().After(deadline) {
			break
		}
	}
	assert.Equal(t, http.StatusOK, resp.StatusCode, "%s", release)
	assert.Contains(t, string(release), "Codename: jessie")

	// The metrics are not on the public site, but on their own address.
	resp, err = client.Get("https://" + proxyAddr + "/metrics")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusNotFound, resp.StatusCode)
	resp, err = http.Get("http://" + metricsAddr + "/metrics")
	require.NoError(t, err)
	metricsBody, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Contains(t, string(metricsBody), "kiln_")
}

// TestGuide checks the commands people copy from the guide against the
// files and the program they act on.
func TestGuide(t *testing.T) {
	b, err := os.ReadFile("README.md")
	require.NoError(t, err)
	guide := string(b)

	// nginx: the file is installed under the name the link and the
	// site's own comment use.
	assert.Contains(t, guide, "# cp deploy/nginx-kiln /etc/nginx/sites-available/kiln\n")
	assert.Contains(t, guide, "# ln -s /etc/nginx/sites-available/kiln /etc/nginx/sites-enabled/kiln\n")
	site, err := os.ReadFile(filepath.Join("deploy", "nginx-kiln"))
	require.NoError(t, err)
	assert.Contains(t, string(site), "Install as /etc/nginx/sites-available/kiln")
	assert.Contains(t, string(site), "proxy_pass http://127.0.0.1:8010/;", "nginx reaches the master where the unit makes it listen")

	// The site answers plain HTTP with a redirect only (which webhooks'
	// posts do not follow): the guide gives its https:// addresses, and
	// the master's default public URL is the same.
	assert.Contains(t, string(site), "return 301 https://$host$request_uri;")
	assert.Empty(t, regexp.MustCompile("http://buildbot\\.ideascube\\.org[^\\s`)]*").FindAllString(guide, -1), "the site's addresses are https://")
	for _, want := range []string{
		"responding on\n[https://buildbot.ideascube.org](https://buildbot.ideascube.org)",
		"`https://buildbot.ideascube.org/change_hook/github`",
	} {
		assert.True(t, strings.Contains(guide, want), "the guide has %q", want)
	}
	assert.Equal(t, "https://buildbot.ideascube.org/", defaultOptions().PublicURL)

	// Each program is installed under the name it is built with.
	builds := regexp.MustCompile(`go build -o dist/(\w+)/([\w-]+) `).FindAllStringSubmatch(guide, -1)
	require.Len(t, builds, 3)
	for _, m := range builds {
		assert.Contains(t, guide, "`dist/"+map[string]string{"ideascube": "amd64", "kiln-worker": "$arch"}[m[2]]+"/"+m[2]+"` to `/srv/buildbot/bin/"+m[2]+"`", m[0])
	}
	units := map[string]string{"kiln-master.service": "/srv/buildbot/bin/ideascube ", "kiln-worker@.service": "/srv/buildbot/bin/kiln-worker "}
	for unit, bin := range units {
		u, err := os.ReadFile(filepath.Join("deploy", unit))
		require.NoError(t, err)
		assert.Contains(t, string(u), "ExecStart="+bin, unit)
	}

	// The secrets the guide lists are those the master reads.
	block := regexp.MustCompile("(?s)```\n(IDEASCUBE_[^`]*)```").FindStringSubmatch(guide)
	require.NotNil(t, block)
	var listed []string
	for _, line := range strings.Split(strings.TrimSpace(block[1]), "\n") {
		k, _, _ := strings.Cut(line, "=")
		listed = append(listed, k)
	}
	assert.Subset(t, listed, requiredSecrets())

	// The Debian parts: the sudoers line and the sbuild-update command,
	// dput's configuration, the APT line.
	t.Run("Sudoers", func(t *testing.T) { guideSudoers(t, guide) })
	t.Run("Dput", func(t *testing.T) { guideDput(t, guide) })
	t.Run("APT", func(t *testing.T) { guideAPT(t, guide) })
}

// TestHelp: -h prints the flags and exits 0; an unknown flag fails,
// naming it.
func TestHelp(t *testing.T) {
	out, err := exec.Command(bins.master, "-h").CombinedOutput()
	require.NoError(t, err, "%s", out)
	assert.Contains(t, string(out), "-basedir")
	assert.Contains(t, string(out), "-archive-unsigned")
	out, err = exec.Command(bins.master, "-no-such-flag").CombinedOutput()
	require.Error(t, err)
	assert.Contains(t, string(out), "flag provided but not defined: -no-such-flag")
}

// TestHashPassword_Terminal: on a terminal, -hash-password asks twice and
// does not echo what is typed.
func TestHashPassword_Terminal(t *testing.T) {
	controller, terminal, err := pty.Open()
	if err != nil {
		t.Skip(err) // Linux only
	}
	defer controller.Close()
	cmd := exec.Command(bins.master, "-hash-password")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = terminal, terminal, terminal
	cmd.SysProcAttr = pty.ProcAttr()
	require.NoError(t, cmd.Start())
	terminal.Close()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() { cmd.Process.Kill() })

	var out bytes.Buffer
	read := func(until string) {
		t.Helper()
		b := make([]byte, 256)
		for !strings.Contains(out.String(), until) {
			controller.SetReadDeadline(time.Now().Add(30 * time.Second))
			n, err := controller.Read(b)
			out.Write(b[:n])
			require.NoError(t, err, "waiting for %q in %q", until, out.String())
		}
	}
	read("Password: ")
	controller.Write([]byte("typed-secret\n"))
	read("Again: ")
	controller.Write([]byte("typed-secret\n"))
	// The rest, until the program has exited and closed the terminal.
	b := make([]byte, 256)
	for {
		controller.SetReadDeadline(time.Now().Add(30 * time.Second))
		n, err := controller.Read(b)
		out.Write(b[:n])
		if err != nil {
			break
		}
	}
	require.NoError(t, <-done)
	assert.NotContains(t, out.String(), "typed-secret", "nothing typed is echoed")
	h := regexp.MustCompile(`\$2a\$10\$[./A-Za-z0-9]{53}`).FindString(out.String())
	require.NotEmpty(t, h, "%s", out.String())
	assert.NoError(t, bcrypt.CompareHashAndPassword([]byte(h), []byte("typed-secret")))
}

// TestHashPassword_Pipe: on standard input that is no terminal,
// -hash-password hashes the first line, alone.
func TestHashPassword_Pipe(t *testing.T) {
	cmd := exec.Command(bins.master, "-hash-password")
	cmd.Stdin = strings.NewReader("a\nb\n")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(t, err, "%s", stderr.String())
	assert.Empty(t, stderr.String(), "no prompt")
	h := strings.TrimSpace(string(out))
	assert.NoError(t, bcrypt.CompareHashAndPassword([]byte(h), []byte("a")))
	for _, other := range []string{"a\nb", "a\nb\n", "ab", "b"} {
		assert.Error(t, bcrypt.CompareHashAndPassword([]byte(h), []byte(other)), "the hash is of %q", other)
	}
}

// writeCert writes a self-signed certificate for 127.0.0.1 and localhost,
// and its key, to certFile and keyFile, and returns the certificate.
func writeCert(t *testing.T, certFile, keyFile string) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "buildbot.ideascube.test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		DNSNames:     []string{"localhost"},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:         true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	kder, err := x509.MarshalECPrivateKey(key)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644))
	require.NoError(t, os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600))
	return der
}

// TestDeploy_WorkerTLS: with -worker-cert and -worker-key, the worker
// port speaks TLS; a kiln-worker created with --use-tls and the
// certificate as its CA file attaches; a renewed certificate is served
// after SIGHUP, without a restart.
func TestDeploy_WorkerTLS(t *testing.T) {
	testenv.NeedTool(t, "openssl")
	base := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(base, "secrets.env"), []byte(deploySecrets), 0o600))
	// The certificate, made with the guide's own command.
	guide, err := os.ReadFile("README.md")
	require.NoError(t, err)
	m := regexp.MustCompile(`(?s)\$ (openssl req .*?-out worker-port.pem)\n`).FindSubmatch(guide)
	require.NotNil(t, m, "the guide's openssl command")
	openssl := exec.Command("sh", "-c", strings.ReplaceAll(string(m[1]), "\\\n", " "))
	openssl.Dir = base
	out, err := openssl.CombinedOutput()
	require.NoError(t, err, "%s", out)
	certFile, keyFile := filepath.Join(base, "worker-port.pem"), filepath.Join(base, "worker-port-key.pem")
	b, err := os.ReadFile(certFile)
	require.NoError(t, err)
	block, _ := pem.Decode(b)
	first := block.Bytes
	httpAddr, workerAddr := freeAddr(t), freeAddr(t)
	master := start(t, nil, nil, bins.master, "-basedir", base, "-http", httpAddr, "-workers", workerAddr,
		"-worker-cert", certFile, "-worker-key", keyFile, "-archive-unsigned", "-metrics", freeAddr(t))
	w := web{t: t, base: "http://" + httpAddr}
	dir := filepath.Join(t.TempDir(), "worker-amd64")
	out, err = exec.Command(bins.worker, "create-worker", "--use-tls", "--ca-file", certFile, dir, workerAddr, "worker-amd64", "amd64 pass").CombinedOutput()
	require.NoError(t, err, "%s", out)
	start(t, nil, nil, bins.worker, "start", dir)
	w.waitFor("the worker to attach over TLS", time.Minute, func() bool {
		resp, err := http.Get(w.base + "/api/v2/workers/worker-amd64")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var ans struct {
			Workers []struct {
				ConnectedTo []any `json:"connected_to"`
			} `json:"workers"`
		}
		return json.NewDecoder(resp.Body).Decode(&ans) == nil && len(ans.Workers) == 1 && len(ans.Workers[0].ConnectedTo) > 0
	})
	served := func() []byte {
		c, err := tls.Dial("tcp", workerAddr, &tls.Config{InsecureSkipVerify: true})
		require.NoError(t, err)
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].Raw
	}
	assert.Equal(t, first, served())
	assert.NotContains(t, master.out.String(), "not encrypted")

	second := writeCert(t, certFile, keyFile)
	require.NoError(t, master.cmd.Process.Signal(syscall.SIGHUP))
	w.waitFor("the renewed certificate", time.Minute, func() bool { return bytes.Equal(served(), second) })
}

// TestDeploy_Backup: -backup, run as the guide says while the master runs,
// writes a copy that opens with the master's builds and steps in it, and
// the master goes on.
func TestDeploy_Backup(t *testing.T) {
	base := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(base, "secrets.env"), []byte(deploySecrets), 0o600))
	httpAddr, workerAddr := freeAddr(t), freeAddr(t)
	master := start(t, nil, nil, bins.master, "-basedir", base, "-http", httpAddr, "-workers", workerAddr,
		"-archive-unsigned", "-metrics", freeAddr(t))
	w := web{t: t, base: "http://" + httpAddr}
	dir := filepath.Join(t.TempDir(), "worker-amd64")
	out, err := exec.Command(bins.worker, "create-worker", dir, workerAddr, "worker-amd64", "amd64 pass").CombinedOutput()
	require.NoError(t, err, "%s", out)
	start(t, nil, nil, bins.worker, "start", "--nodaemon", dir)
	var builders struct {
		Builders []struct {
			ID int `json:"builderid"`
		} `json:"builders"`
	}
	w.waitFor("the master's API", time.Minute, func() bool {
		resp, err := http.Get(w.base + "/api/v2/builders?name=build-amd64-pkg")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		return json.NewDecoder(resp.Body).Decode(&builders) == nil && len(builders.Builders) == 1
	})
	// A tag that is no Debian version: the build fails at its first step,
	// on the master, without a checkout or sbuild.
	require.Equal(t, http.StatusOK, w.force("admin", "admin pass", builders.Builders[0].ID, "not-a-version"))
	var done []build
	w.waitFor("the forced build to end", 2*time.Minute, func() bool {
		done = w.builds(0)
		return len(done) == 1
	})
	require.NotNil(t, done[0].Results)
	require.Equal(t, failure, *done[0].Results)

	backup := filepath.Join(t.TempDir(), "backup.sqlite")
	out, err = exec.Command(bins.master, "-basedir", base, "-backup", backup).CombinedOutput()
	require.NoError(t, err, "%s", out)
	select {
	case <-master.done:
		t.Fatalf("the master stopped during the backup:\n%s", master.out.String())
	default:
	}
	db, err := sql.Open("sqlite", backup)
	require.NoError(t, err)
	defer db.Close()
	var results int
	require.NoError(t, db.QueryRow(`SELECT results FROM builds WHERE id = ?`, done[0].BuildID).Scan(&results))
	assert.Equal(t, failure, results, "the backup has the build")
	var state string
	require.NoError(t, db.QueryRow(`SELECT state_string FROM steps WHERE build_id = ? AND name = 'version'`, done[0].BuildID).Scan(&state))
	assert.Contains(t, state, `"not-a-version" is not a Debian version`, "the backup has its steps")
	// The master still answers, from its own database.
	assert.Equal(t, 1, w.total("/api/v2/builds"))
}
