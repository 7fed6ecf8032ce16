package remote

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// certCheckInterval is how often, at most, the certificate files are
// looked at for a change: on a handshake, never more than once a second.
const certCheckInterval = time.Second

// certReloader serves the certificate of a pair of files, and serves the
// new one once they change (a renewed certificate), without a restart:
// handshakes after the change get it. A pair that does not load (a key
// written before its certificate, say) leaves the last good one served,
// and is tried again at the next check.
type certReloader struct {
	certFile, keyFile string
	log               *slog.Logger
	now               func() time.Time

	mu      sync.Mutex
	cert    *tls.Certificate
	stamp   string // the files' sizes and times when cert was loaded
	checked time.Time
}

func newCertReloader(certFile, keyFile string, log *slog.Logger) (*certReloader, error) {
	r := &certReloader{certFile: certFile, keyFile: keyFile, log: log, now: time.Now}
	stamp, err := r.fileStamp()
	if err != nil {
		return nil, fmt.Errorf("worker listener: TLS certificate: %w", err)
	}
	if err := r.load(stamp); err != nil {
		return nil, err
	}
	return r, nil
}

// fileStamp sums up the two files: their sizes and modification times.
func (r *certReloader) fileStamp() (string, error) {
	var s string
	for _, f := range []string{r.certFile, r.keyFile} {
		st, err := os.Stat(f)
		if err != nil {
			return "", err
		}
		s += fmt.Sprintf("%d.%d;", st.Size(), st.ModTime().UnixNano())
	}
	return s, nil
}

func (r *certReloader) load(stamp string) error {
	cert, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return fmt.Errorf("worker listener: load TLS certificate: %w", err)
	}
	r.cert, r.stamp = &cert, stamp
	return nil
}

// reload loads the files again if they changed since they were loaded.
func (r *certReloader) reload() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.checked = r.now()
	stamp, err := r.fileStamp()
	if err != nil || stamp == r.stamp {
		return
	}
	if err := r.load(stamp); err != nil {
		r.log.Error("the new TLS certificate does not load; serving the previous one", "err", err)
		return
	}
	r.log.Info("TLS certificate reloaded", "cert", r.certFile)
}

// getCertificate is the tls.Config's GetCertificate.
func (r *certReloader) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.mu.Lock()
	due := r.now().Sub(r.checked) >= certCheckInterval
	r.mu.Unlock()
	if due {
		r.reload()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cert, nil
}
