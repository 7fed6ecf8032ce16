package worker

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"
)

// ErrUnauthorized is wrapped by the error of a connection attempt the
// master refused with HTTP 401: a wrong name or password.
var ErrUnauthorized = errors.New("the master refused the worker's name or password (HTTP 401)")

// masterURL turns a Master address into the URL to dial: "host:port" and
// "host" become ws://host:port/; ws:// and wss:// URLs are kept, with
// path "/" if they have none.
func masterURL(master string) (string, error) {
	if master == "" {
		return "", errors.New("no master address")
	}
	if strings.Contains(master, "://") {
		u, err := url.Parse(master)
		if err != nil {
			return "", fmt.Errorf("master address: %w", err)
		}
		if u.Scheme != "ws" && u.Scheme != "wss" {
			return "", fmt.Errorf("master address %q: scheme %q is not ws or wss", master, u.Scheme)
		}
		if u.Host == "" {
			return "", fmt.Errorf("master address %q has no host", master)
		}
		if u.User != nil {
			return "", fmt.Errorf("master address %q: give the credentials as the worker's name and password, not in the URL", master)
		}
		if u.Path == "" {
			u.Path = "/"
		}
		return u.String(), nil
	}
	host, port := master, strconv.Itoa(DefaultPort)
	if h, p, err := net.SplitHostPort(master); err == nil {
		host, port = h, p
	} else if strings.Count(master, ":") > 1 && !strings.HasPrefix(master, "[") {
		return "", fmt.Errorf("master address %q: enclose an IPv6 address in brackets", master)
	} else {
		host = strings.TrimSuffix(strings.TrimPrefix(master, "["), "]")
	}
	if host == "" {
		return "", fmt.Errorf("master address %q has no host", master)
	}
	if n, err := strconv.Atoi(port); err != nil || n <= 0 || n > 65535 {
		return "", fmt.Errorf("master address %q: port %q is not a number from 1 to 65535", master, port)
	}
	return "ws://" + net.JoinHostPort(host, port) + "/", nil
}

// tlsConfig returns the TLS configuration for a wss:// master: the
// certificates of caFile as roots, or the system's if caFile is empty.
func tlsConfig(caFile string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile == "" {
		return cfg, nil
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("CA file %s holds no PEM certificate", caFile)
	}
	cfg.RootCAs = pool
	return cfg, nil
}

// basicAuth returns the Authorization header of HTTP Basic authentication.
func basicAuth(name, password string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(name+":"+password))
}

// dial opens a WebSocket connection to the master, authenticated with the
// worker's credentials.
// It returns the connection with the batchConn it runs on.
func (a *agent) dial(ctx context.Context) (*websocket.Conn, *batchConn, error) {
	ctx, cancel := context.WithTimeout(ctx, a.dialTO)
	defer cancel()
	// Not http.DefaultTransport: no proxy from the environment (build
	// commands may need one the worker's own connection must not use),
	// HTTP/1.1 only, and TCP keepalives so that a master that vanished
	// without closing the connection is noticed.
	dialer := &net.Dialer{Timeout: a.dialTO}
	var bc *batchConn
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := dialer.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			bc = &batchConn{Conn: c}
			return bc, nil
		},
		TLSClientConfig: a.tls,
	}
	defer tr.CloseIdleConnections()
	c, resp, err := websocket.Dial(ctx, a.url, &websocket.DialOptions{
		HTTPClient: &http.Client{Transport: tr},
		HTTPHeader: http.Header{"Authorization": {a.auth}},
	})
	if err != nil {
		if resp != nil && resp.StatusCode == http.StatusUnauthorized {
			return nil, nil, fmt.Errorf("dial %s: %w", a.url, refusal{ErrUnauthorized})
		}
		if resp != nil && resp.StatusCode == http.StatusConflict {
			return nil, nil, fmt.Errorf("dial %s: %w", a.url, refusal{err})
		}
		if resp != nil && resp.StatusCode != http.StatusSwitchingProtocols {
			// A web server, not a worker port: the master's web UI, or a
			// proxy in front of something else.
			return nil, nil, fmt.Errorf("dial %s: %w", a.url, refusal{fmt.Errorf("reached an HTTP server that answered %q, not a master's worker port: "+
				"workers connect to the master's worker port (9989 by default, its -workers), not to its web port", resp.Status)})
		}
		var verify *tls.CertificateVerificationError
		if errors.As(err, &verify) {
			return nil, nil, fmt.Errorf("dial %s: %w", a.url, refusal{err})
		}
		return nil, nil, fmt.Errorf("dial %s: %w", a.url, err)
	}
	return c, bc, nil
}

// errRefused marks the failures where the master (or what answers at its
// address) was reached and turned the worker down: see refusal.
var errRefused = errors.New("refused")

// A refusal is a connection attempt the other side answered with a no:
// a wrong password, a name in use, not a worker port, a certificate that
// does not verify. Trying again soon changes nothing, so the waits grow
// to MaxBackoff.
type refusal struct{ err error }

func (r refusal) Error() string   { return r.err.Error() }
func (r refusal) Unwrap() []error { return []error{r.err, errRefused} }

// A batchConn is the TCP connection to the master. The WebSocket library
// writes a frame through a buffer of 4 KiB, one write(2) for each 4 KiB of
// the frame; between start and flush, a batchConn gathers the writes and
// flush sends them in one. Other writes (the library's own control frames
// when no frame is being sent) go through as they come.
type batchConn struct {
	net.Conn

	mu       sync.Mutex
	batching bool
	buf      *[]byte // from frameBuffers
}

func (c *batchConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	if c.batching {
		*c.buf = append(*c.buf, p...)
		c.mu.Unlock()
		return len(p), nil
	}
	c.mu.Unlock()
	return c.Conn.Write(p)
}

// start gathers the writes that follow, until flush.
func (c *batchConn) start() {
	c.mu.Lock()
	c.batching = true
	c.buf = frameBuffers.Get().(*[]byte)
	*c.buf = (*c.buf)[:0]
	c.mu.Unlock()
}

// flush writes what was gathered since start, within timeout, and stops
// gathering. After an error the connection is unusable: a frame may have
// gone out in part.
func (c *batchConn) flush(timeout time.Duration) error {
	c.mu.Lock()
	buf := c.buf
	c.batching, c.buf = false, nil
	c.mu.Unlock()
	defer func() {
		if cap(*buf) <= maxPooledFrame {
			frameBuffers.Put(buf)
		}
	}()
	if len(*buf) == 0 {
		return nil
	}
	if err := c.Conn.SetWriteDeadline(time.Now().Add(timeout)); err != nil {
		return err
	}
	_, err := c.Conn.Write(*buf)
	if err == nil {
		err = c.Conn.SetWriteDeadline(time.Time{})
	}
	return err
}
