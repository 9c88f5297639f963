package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
)

// staticSource sends the same request on every connection.
type staticSource struct {
	req    []byte
	marker []byte // a success response's body contains it
}

func (s *staticSource) prepare(context.Context, string, int) error { return nil }
func (s *staticSource) requester(int) requester                    { return s }
func (s *staticSource) next() ([]byte, bool)                       { return s.req, true }
func (s *staticSource) check(status int, body []byte) bool {
	return status == 200 && bytes.Contains(body, s.marker)
}

// listSource sends a list of requests round-robin (introspection of many
// tokens); each connection starts at its own place in the list.
type listSource struct {
	reqs   [][]byte
	marker []byte
	conns  int
}

func (s *listSource) prepare(_ context.Context, _ string, conns int) error {
	s.conns = conns
	return nil
}

func (s *listSource) requester(i int) requester {
	return &listReq{s: s, i: i * len(s.reqs) / max(1, s.conns)}
}

type listReq struct {
	s *listSource
	i int
}

func (r *listReq) next() ([]byte, bool) {
	req := r.s.reqs[r.i]
	if r.i++; r.i == len(r.s.reqs) {
		r.i = 0
	}
	return req, true
}

func (r *listReq) check(status int, body []byte) bool {
	return status == 200 && bytes.Contains(body, r.s.marker)
}

// poolSource hands out pre-built single-use requests (pre-signed SNAP
// requests) from a shared pool; next fails when the pool is used up.
// The pool grows only between runs.
type poolSource struct {
	reqs   [][]byte
	used   atomic.Int64
	marker []byte
}

func (s *poolSource) prepare(context.Context, string, int) error { return nil }
func (s *poolSource) requester(int) requester                    { return s }

func (s *poolSource) next() ([]byte, bool) {
	i := s.used.Add(1) - 1
	if i >= int64(len(s.reqs)) {
		s.used.Add(-1)
		return nil, false
	}
	return s.reqs[i], true
}

func (s *poolSource) check(status int, body []byte) bool {
	return status == 200 && bytes.Contains(body, s.marker)
}

// left is how many requests are still unused.
func (s *poolSource) left() int { return len(s.reqs) - int(s.used.Load()) }

// refreshSource runs refresh-token rotation: each connection holds its own
// chain, started by one password grant, and exchanges the chain's current
// refresh token for the next one.
type refreshSource struct {
	host, auth string
	pwReq      []byte // password grant: starts (or restarts) a chain
	chains     [][]byte
	restarts   atomic.Int64 // chains restarted after a failed refresh
}

var (
	refreshKey    = []byte(`"refresh_token":"`)
	accessTokenKV = []byte(`"access_token":"`)
)

// newChain runs the password grant on c and returns its refresh token.
func (s *refreshSource) newChain(c *conn) ([]byte, error) {
	status, body, err := c.do(s.pwReq)
	if err != nil {
		return nil, err
	}
	tok, ok := jsonField(body, refreshKey)
	if status != 200 || !ok {
		return nil, fmt.Errorf("password grant: status %d: %.200s", status, body)
	}
	return bytes.Clone(tok), nil
}

// prepare starts the chains the run needs that do not exist yet, a few at
// a time (the server runs at most password_hash_concurrency argon2id
// hashes at once anyway).
func (s *refreshSource) prepare(ctx context.Context, addr string, conns int) error {
	need := conns - len(s.chains)
	if need <= 0 {
		return nil
	}
	fresh := make([][]byte, need)
	var next atomic.Int64
	errs := make([]error, 4)
	var wg sync.WaitGroup
	for w := range errs {
		wg.Go(func() {
			c := newConn(addr)
			defer c.close()
			for ctx.Err() == nil {
				i := next.Add(1) - 1
				if i >= int64(need) {
					return
				}
				tok, err := s.newChain(c)
				if err != nil {
					errs[w] = err
					return
				}
				fresh[i] = tok
			}
		})
	}
	wg.Wait()
	if err := errors.Join(append(errs, ctx.Err())...); err != nil {
		return fmt.Errorf("starting refresh chains: %w", err)
	}
	s.chains = append(s.chains, fresh...)
	return nil
}

func (s *refreshSource) requester(i int) requester {
	prefix := fmt.Sprintf("POST /oauth/token HTTP/1.1\r\nHost: %s\r\nAuthorization: %s\r\n"+
		"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: ", s.host, s.auth)
	return &refreshReq{s: s, i: i, prefix: []byte(prefix)}
}

type refreshReq struct {
	s      *refreshSource
	i      int
	prefix []byte
	buf    []byte
}

const refreshBody = "grant_type=refresh_token&refresh_token="

func (r *refreshReq) next() ([]byte, bool) {
	tok := r.s.chains[r.i]
	b := append(r.buf[:0], r.prefix...)
	b = strconv.AppendInt(b, int64(len(refreshBody)+len(tok)), 10)
	b = append(b, "\r\n\r\n"+refreshBody...)
	b = append(b, tok...)
	r.buf = b
	return b, true
}

// check takes the rotated refresh token from the response: the chain's
// next request needs it.
func (r *refreshReq) check(status int, body []byte) bool {
	if status != 200 || !bytes.Contains(body, accessTokenKV) {
		return false
	}
	tok, ok := jsonField(body, refreshKey)
	if !ok {
		return false
	}
	r.s.chains[r.i] = append(r.s.chains[r.i][:0], tok...)
	return true
}

// restart starts a new chain after a failed refresh: the old one may have
// been revoked as a replay.
func (r *refreshReq) restart() []byte {
	r.s.restarts.Add(1)
	return r.s.pwReq
}

func (r *refreshReq) restarted(status int, body []byte) bool {
	tok, ok := jsonField(body, refreshKey)
	if status != 200 || !ok {
		return false
	}
	r.s.chains[r.i] = append(r.s.chains[r.i][:0], tok...)
	return true
}
