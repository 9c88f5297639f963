package main

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"sync"
)

// conn is one keep-alive HTTP/1.1 connection of the load generator. It
// sends precomputed request bytes and parses only the status line, the
// framing headers and the body. It is not safe for concurrent use.
type conn struct {
	addr    string
	nc      net.Conn
	br      *bufio.Reader
	scratch []byte

	mu   sync.Mutex // guards nc against kill from another goroutine
	dead bool
}

const readBufSize = 16 << 10

func newConn(addr string) *conn { return &conn{addr: addr} }

var errKilled = errors.New("connection closed by the harness")

// dial connects if the connection is not open.
func (c *conn) dial() error {
	if c.nc != nil {
		return nil
	}
	nc, err := net.Dial("tcp", c.addr)
	if err != nil {
		return err
	}
	c.mu.Lock()
	if c.dead {
		c.mu.Unlock()
		nc.Close()
		return errKilled
	}
	c.nc = nc
	c.mu.Unlock()
	if c.br == nil {
		c.br = bufio.NewReaderSize(nc, readBufSize)
	} else {
		c.br.Reset(nc)
	}
	return nil
}

// close closes the connection; the next do dials again.
func (c *conn) close() {
	c.mu.Lock()
	if c.nc != nil {
		c.nc.Close()
		c.nc = nil
	}
	c.mu.Unlock()
}

// kill closes the connection for good, from any goroutine: a read blocked
// in do returns an error, and later dials fail.
func (c *conn) kill() {
	c.mu.Lock()
	c.dead = true
	if c.nc != nil {
		c.nc.Close()
	}
	c.mu.Unlock()
}

var errMalformed = errors.New("malformed HTTP response")

// do sends one request and reads its response. body is valid only until
// the next call. After an error the connection is closed.
func (c *conn) do(req []byte) (status int, body []byte, err error) {
	if err := c.dial(); err != nil {
		return 0, nil, err
	}
	if _, err := c.nc.Write(req); err != nil {
		c.close()
		return 0, nil, err
	}
	status, body, err = c.readResponse()
	if err != nil {
		c.close()
	}
	return status, body, err
}

func (c *conn) readResponse() (status int, body []byte, err error) {
	line, err := c.br.ReadSlice('\n')
	if err != nil {
		return 0, nil, err
	}
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) || line[8] != ' ' {
		return 0, nil, errMalformed
	}
	for _, d := range line[9:12] {
		if d < '0' || d > '9' {
			return 0, nil, errMalformed
		}
		status = status*10 + int(d-'0')
	}
	length, chunked, closeAfter := -1, false, false
	for {
		line, err = c.br.ReadSlice('\n')
		if err != nil {
			return 0, nil, err
		}
		if len(line) <= 2 { // the empty line ending the header
			break
		}
		colon := bytes.IndexByte(line, ':')
		if colon < 0 {
			return 0, nil, errMalformed
		}
		name, value := line[:colon], bytes.TrimSpace(line[colon+1:])
		switch {
		case equalFold(name, "Content-Length"):
			n, ok := parseDecimal(value)
			if !ok {
				return 0, nil, errMalformed
			}
			length = n
		case equalFold(name, "Transfer-Encoding"):
			chunked = bytes.Contains(value, []byte("chunked"))
		case equalFold(name, "Connection"):
			closeAfter = equalFold(value, "close")
		}
	}
	switch {
	case chunked:
		body, err = c.readChunked()
	case length < 0:
		return 0, nil, errors.New("response without Content-Length is not supported")
	case length <= c.br.Size():
		// Peek returns the bytes in place; they stay valid until the next read.
		body, err = c.br.Peek(length)
		if err == nil {
			_, err = c.br.Discard(length)
		}
	default:
		if cap(c.scratch) < length {
			c.scratch = make([]byte, length)
		}
		body = c.scratch[:length]
		_, err = io.ReadFull(c.br, body)
	}
	if err != nil {
		return 0, nil, err
	}
	if closeAfter {
		// The body is still needed by the caller; copy it before closing.
		body = append(c.scratch[:0], body...)
		c.scratch = body
		c.close()
	}
	return status, body, nil
}

func (c *conn) readChunked() ([]byte, error) {
	body := c.scratch[:0]
	for {
		line, err := c.br.ReadSlice('\n')
		if err != nil {
			return nil, err
		}
		if i := bytes.IndexByte(line, ';'); i >= 0 {
			line = line[:i]
		}
		n, err := strconv.ParseInt(string(bytes.TrimSpace(line)), 16, 32)
		if err != nil || n < 0 {
			return nil, errMalformed
		}
		if n == 0 {
			// Trailers, then the empty line.
			for {
				line, err := c.br.ReadSlice('\n')
				if err != nil {
					return nil, err
				}
				if len(line) <= 2 {
					c.scratch = body
					return body, nil
				}
			}
		}
		start := len(body)
		body = append(body, make([]byte, n)...)
		if _, err := io.ReadFull(c.br, body[start:]); err != nil {
			return nil, err
		}
		if _, err := c.br.Discard(2); err != nil { // CRLF after the chunk
			return nil, err
		}
	}
}

// equalFold reports whether b equals the ASCII string s ignoring case.
func equalFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		x, y := b[i], s[i]
		if x|0x20 != y|0x20 {
			return false
		}
		// |0x20 folds letters; make sure it did not equate two non-letters.
		if x != y && (x|0x20 < 'a' || x|0x20 > 'z') {
			return false
		}
	}
	return true
}

// basicAuth is the Authorization header value of RFC 6749 §2.3.1: the id
// and secret are form-encoded before Base64.
func basicAuth(id, secret string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(id)+":"+url.QueryEscape(secret)))
}

// formRequest returns a complete POST request with a form body.
func formRequest(host, path, auth, body string) []byte {
	return fmt.Appendf(nil, "POST %s HTTP/1.1\r\nHost: %s\r\nAuthorization: %s\r\n"+
		"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: %d\r\n\r\n%s",
		path, host, auth, len(body), body)
}

// parseDecimal parses a non-negative decimal number without allocating.
func parseDecimal(b []byte) (int, bool) {
	if len(b) == 0 || len(b) > 9 {
		return 0, false
	}
	n := 0
	for _, d := range b {
		if d < '0' || d > '9' {
			return 0, false
		}
		n = n*10 + int(d-'0')
	}
	return n, true
}

// jsonField returns the value after key (`"name":"`) in a JSON body,
// without decoding it (tokens contain no escapes).
func jsonField(body, key []byte) ([]byte, bool) {
	i := bytes.Index(body, key)
	if i < 0 {
		return nil, false
	}
	rest := body[i+len(key):]
	j := bytes.IndexByte(rest, '"')
	if j <= 0 {
		return nil, false
	}
	return rest[:j], true
}
