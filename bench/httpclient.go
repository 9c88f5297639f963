package main

import (
	"encoding/base64"
	"fmt"
	"net"
	"net/url"
)

// conn is a blocking keep-alive HTTP/1.1 connection for the set-up work
// done outside the measured runs (issuing tokens to introspect, starting
// refresh chains). The measured runs use the event loop (evloop.go).
type conn struct {
	addr    string
	nc      net.Conn
	buf     []byte
	n       int // bytes of buf filled
	scratch []byte
}

const readBufSize = 16 << 10

func newConn(addr string) *conn { return &conn{addr: addr, buf: make([]byte, readBufSize)} }

// close closes the connection; the next do dials again.
func (c *conn) close() {
	if c.nc != nil {
		c.nc.Close()
		c.nc = nil
	}
}

// do sends one request and reads its response. body is valid only until
// the next call. After an error the connection is closed.
func (c *conn) do(req []byte) (status int, body []byte, err error) {
	if c.nc == nil {
		if c.nc, err = net.Dial("tcp", c.addr); err != nil {
			return 0, nil, err
		}
		c.n = 0
	}
	if _, err := c.nc.Write(req); err != nil {
		c.close()
		return 0, nil, err
	}
	for {
		r, ok, err := parseResponse(c.buf[:c.n], &c.scratch)
		if err != nil {
			c.close()
			return 0, nil, err
		}
		if ok {
			// Nothing follows a response on this connection: one request
			// is in flight at a time.
			c.n = 0
			if r.closeConn {
				r.body = append(c.scratch[:0], r.body...)
				c.scratch = r.body
				c.close()
			}
			return r.status, r.body, nil
		}
		if c.n == len(c.buf) {
			c.close()
			return 0, nil, errTooLarge
		}
		m, err := c.nc.Read(c.buf[c.n:])
		c.n += m
		if err != nil {
			c.close()
			return 0, nil, err
		}
	}
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
