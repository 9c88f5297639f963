// Package certreload serves a TLS certificate and private key from files
// and picks up replaced files without a restart.
//
// The files are re-read when their modification time or size changes,
// checked at most once every Options.CheckEvery from GetCertificate and on
// every Reload (Run calls it on a ticker). A replacement that does not load
// — half-written, not a matching pair, already expired — is refused: the
// last good pair keeps being served, and the refusal is logged once per
// version of the files. Nothing from the key file is ever logged.
package certreload

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Options tune a Reloader; the zero value is usable.
type Options struct {
	// CheckEvery bounds how often GetCertificate looks at the files.
	// Default 5s.
	CheckEvery time.Duration
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Logger gets reloads and refusals; default discards.
	Logger *slog.Logger
}

// Reloader holds the current certificate. Safe for concurrent use.
type Reloader struct {
	certFile, keyFile string
	opts              Options
	cur               atomic.Pointer[tls.Certificate]

	mu        sync.Mutex
	lastCheck time.Time
	loaded    version // of the pair in cur
	bad       version // last refused version, already logged
	badErr    error
}

// version identifies the contents of both files without reading them.
type version struct {
	certMod, keyMod   time.Time
	certSize, keySize int64
}

func stat(certFile, keyFile string) (version, error) {
	c, err := os.Stat(certFile)
	if err != nil {
		return version{}, err
	}
	k, err := os.Stat(keyFile)
	if err != nil {
		return version{}, err
	}
	return version{certMod: c.ModTime(), keyMod: k.ModTime(), certSize: c.Size(), keySize: k.Size()}, nil
}

// New loads the pair. It returns an error, naming the files, if either
// cannot be read, they are not a matching certificate and key, or the
// certificate has expired.
func New(certFile, keyFile string, opts Options) (*Reloader, error) {
	if opts.CheckEvery <= 0 {
		opts.CheckEvery = 5 * time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	r := &Reloader{certFile: certFile, keyFile: keyFile, opts: opts}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.checkLocked(); err != nil {
		return nil, err
	}
	if r.cur.Load() == nil { // the files changed while being read
		return nil, fmt.Errorf("tls: %s and %s changed while being read; try again", certFile, keyFile)
	}
	return r, nil
}

// GetCertificate returns the current certificate, first re-checking the
// files if CheckEvery has passed. Use it as tls.Config.GetCertificate (and
// set no tls.Config.Certificates: crypto/tls skips GetCertificate for
// clients that send no server name when Certificates is set). It never
// returns an error.
func (r *Reloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	// A handshake never waits for another one's check.
	if r.mu.TryLock() {
		if r.opts.Now().Sub(r.lastCheck) >= r.opts.CheckEvery {
			r.checkLocked()
		}
		r.mu.Unlock()
	}
	return r.cur.Load(), nil
}

// Certificate returns the pair being served.
func (r *Reloader) Certificate() *tls.Certificate { return r.cur.Load() }

// Reload checks the files now and loads them if they changed. It returns
// nil if the pair being served is the one on disk (or the files are being
// written at this moment), else why the files on disk are refused.
func (r *Reloader) Reload() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.checkLocked()
}

// Run calls Reload every interval until ctx is done.
func (r *Reloader) Run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			r.Reload()
		}
	}
}

func (r *Reloader) checkLocked() error {
	r.lastCheck = r.opts.Now()
	before, err := stat(r.certFile, r.keyFile)
	if err != nil {
		// A file renamed into place can be missing for a moment: refused
		// now, retried next check.
		return r.refuseLocked(version{}, err)
	}
	if before == r.loaded && r.cur.Load() != nil {
		return nil
	}
	if r.badErr != nil && before == r.bad {
		return r.badErr
	}
	certPEM, err := os.ReadFile(r.certFile)
	if err != nil {
		return r.refuseLocked(before, err)
	}
	keyPEM, err := os.ReadFile(r.keyFile)
	if err != nil {
		return r.refuseLocked(before, err)
	}
	if after, err := stat(r.certFile, r.keyFile); err != nil || after != before {
		return nil // still being written: look again next time
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		// crypto/tls's messages describe the PEM blocks' types and the
		// mismatch, never key bytes.
		return r.refuseLocked(before, fmt.Errorf("%s and %s: %w", r.certFile, r.keyFile, err))
	}
	if now := r.opts.Now(); !now.Before(pair.Leaf.NotAfter) {
		return r.refuseLocked(before, fmt.Errorf("%s: certificate expired at %s", r.certFile, pair.Leaf.NotAfter.UTC().Format(time.RFC3339)))
	}
	first := r.cur.Load() == nil
	r.cur.Store(&pair)
	r.loaded, r.bad, r.badErr = before, version{}, nil
	if !first {
		r.opts.Logger.Info("TLS certificate reloaded", "cert_file", r.certFile,
			"subject", pair.Leaf.Subject.String(), "serial", pair.Leaf.SerialNumber.String(),
			"not_after", pair.Leaf.NotAfter.UTC())
	}
	return nil
}

// refuseLocked records that version v of the files is refused, logging it
// the first time.
func (r *Reloader) refuseLocked(v version, err error) error {
	err = fmt.Errorf("tls: %w", err)
	if r.badErr != nil && v == r.bad && err.Error() == r.badErr.Error() {
		return r.badErr
	}
	r.bad, r.badErr = v, err
	if r.cur.Load() != nil {
		r.opts.Logger.Warn("TLS certificate files refused; still serving the previous certificate", "err", err)
	}
	return err
}
