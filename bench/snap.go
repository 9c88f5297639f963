package main

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// snapClient is a SNAP client with its private key.
type snapClient struct {
	id  string
	key *rsa.PrivateKey
}

// generateSnapKeys makes n RSA-2048 key pairs in parallel and writes each
// public key (PEM "PUBLIC KEY") into dir, returning the keys and files.
func generateSnapKeys(ctx context.Context, dir string, n int) ([]*rsa.PrivateKey, []string, error) {
	keys := make([]*rsa.PrivateKey, n)
	files := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			if ctx.Err() != nil {
				errs[i] = ctx.Err()
				return
			}
			k, err := rsa.GenerateKey(rand.Reader, 2048)
			if err != nil {
				errs[i] = err
				return
			}
			der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
			if err != nil {
				errs[i] = err
				return
			}
			files[i] = fmt.Sprintf("%s/snap-%d.pub.pem", dir, i)
			errs[i] = os.WriteFile(files[i], pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600)
			keys[i] = k
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, nil, err
		}
	}
	return keys, files, nil
}

// snapSigner pre-signs SNAP access-token requests. Every request has its
// own (client, millisecond X-TIMESTAMP) pair, so its signature is unique:
// an endpoint with replay_protection accepts each once too.
type snapSigner struct {
	host    string
	clients []snapClient
	lastMs  int64         // the latest timestamp used, Unix ms
	perSig  time.Duration // measured signing time per signature and CPU
	signed  int
	spent   time.Duration
}

const snapBody = `{"grantType":"client_credentials","additionalInfo":{}}`

// snapTimestamp formats X-TIMESTAMP with milliseconds, in UTC.
func snapTimestamp(ms int64) string {
	return time.UnixMilli(ms).UTC().Format("2006-01-02T15:04:05.000Z07:00")
}

// sign appends n pre-signed requests to pool, signing on every CPU.
func (s *snapSigner) sign(ctx context.Context, pool *poolSource, n int) error {
	if n <= 0 {
		return nil
	}
	cpus := runtime.NumCPU()
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(cpus))
	began := time.Now()
	if s.perSig == 0 {
		t := time.Now()
		s.signOne(s.clients[0], time.Now().UnixMilli())
		s.perSig = time.Since(t) / time.Duration(cpus)
	}
	// Timestamps start near when signing will end, slightly in the past,
	// so the requests used last are still inside the server's ±5 min
	// window; n/len(clients) ms is the span of the batch.
	k := int64(len(s.clients))
	first := max(s.lastMs+1, time.Now().Add(time.Duration(n)*s.perSig-30*time.Second).UnixMilli())
	s.lastMs = first + (int64(n)-1)/k
	if span := time.Duration(int64(n)/k) * time.Millisecond; span > 4*time.Minute {
		fmt.Fprintf(os.Stderr, "bench: warning: %d SNAP requests span %s of timestamps; use more -snap-clients to stay inside the 5 min window\n", n, span)
	}
	reqs := make([][]byte, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	const chunk = 64
	for range cpus {
		wg.Go(func() {
			for ctx.Err() == nil {
				lo := int(next.Add(chunk) - chunk)
				if lo >= n {
					return
				}
				for j := lo; j < min(lo+chunk, n); j++ {
					reqs[j] = s.signOne(s.clients[int64(j)%k], first+int64(j)/k)
				}
			}
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return err
	}
	pool.reqs = append(pool.reqs, reqs...)
	s.signed += n
	s.spent += time.Since(began)
	return nil
}

// signOne builds one complete request: SHA256withRSA over
// client_id + "|" + X-TIMESTAMP, standard Base64 in X-SIGNATURE.
func (s *snapSigner) signOne(c snapClient, ms int64) []byte {
	ts := snapTimestamp(ms)
	digest := sha256.Sum256([]byte(c.id + "|" + ts))
	sig, err := rsa.SignPKCS1v15(nil, c.key, crypto.SHA256, digest[:])
	if err != nil {
		panic(err) // only for a broken key, which GenerateKey does not make
	}
	return fmt.Appendf(nil, "POST /v1.0/access-token/b2b HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"+
		"X-TIMESTAMP: %s\r\nX-CLIENT-KEY: %s\r\nX-SIGNATURE: %s\r\nContent-Length: %d\r\n\r\n%s",
		s.host, ts, c.id, base64.StdEncoding.EncodeToString(sig), len(snapBody), snapBody)
}
