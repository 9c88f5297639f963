package main

import (
	"bytes"
	"errors"
)

// response is one parsed HTTP/1.1 response.
type response struct {
	status    int
	body      []byte // aliases the read buffer (or the scratch buffer when chunked)
	consumed  int    // bytes of the buffer the response took
	closeConn bool   // the server said Connection: close
}

var (
	errMalformed = errors.New("malformed HTTP response")
	errTooLarge  = errors.New("HTTP response larger than the read buffer")
	headerEnd    = []byte("\r\n\r\n")
)

// parseResponse parses the response at the start of buf. It returns
// ok=false when buf does not hold the whole response yet. Chunked bodies
// are joined into *scratch.
func parseResponse(buf []byte, scratch *[]byte) (r response, ok bool, err error) {
	hend := bytes.Index(buf, headerEnd)
	if hend < 0 {
		return r, false, nil
	}
	head := buf[:hend+2] // status line and header lines, each ending in CRLF
	eol := bytes.IndexByte(head, '\n')
	line := head[:eol+1]
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) || line[8] != ' ' {
		return r, false, errMalformed
	}
	for _, d := range line[9:12] {
		if d < '0' || d > '9' {
			return r, false, errMalformed
		}
		r.status = r.status*10 + int(d-'0')
	}
	length, chunked := -1, false
	for rest := head[eol+1:]; len(rest) > 0; {
		eol := bytes.IndexByte(rest, '\n')
		line := rest[:eol+1]
		rest = rest[eol+1:]
		colon := bytes.IndexByte(line, ':')
		if colon < 0 {
			return r, false, errMalformed
		}
		name, value := line[:colon], bytes.TrimSpace(line[colon+1:])
		switch {
		case equalFold(name, "Content-Length"):
			n, ok := parseDecimal(value)
			if !ok {
				return r, false, errMalformed
			}
			length = n
		case equalFold(name, "Transfer-Encoding"):
			chunked = bytes.Contains(value, []byte("chunked"))
		case equalFold(name, "Connection"):
			r.closeConn = equalFold(value, "close")
		}
	}
	start := hend + 4
	switch {
	case chunked:
		body := (*scratch)[:0]
		p := start
		for {
			eol := bytes.IndexByte(buf[p:], '\n')
			if eol < 0 {
				return r, false, nil
			}
			sizeLine := buf[p : p+eol]
			if i := bytes.IndexByte(sizeLine, ';'); i >= 0 {
				sizeLine = sizeLine[:i]
			}
			n, ok := parseHex(bytes.TrimSpace(sizeLine))
			if !ok {
				return r, false, errMalformed
			}
			p += eol + 1
			if n == 0 {
				// Trailers (none expected), then the empty line.
				for {
					eol := bytes.IndexByte(buf[p:], '\n')
					if eol < 0 {
						return r, false, nil
					}
					p += eol + 1
					if eol <= 1 {
						break
					}
				}
				*scratch = body
				r.body, r.consumed = body, p
				return r, true, nil
			}
			if len(buf)-p < n+2 {
				return r, false, nil
			}
			body = append(body, buf[p:p+n]...)
			p += n + 2
		}
	case length < 0:
		return r, false, errors.New("HTTP response without Content-Length")
	case len(buf)-start < length:
		return r, false, nil
	}
	r.body, r.consumed = buf[start:start+length], start+length
	return r, true, nil
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

func parseHex(b []byte) (int, bool) {
	if len(b) == 0 || len(b) > 7 {
		return 0, false
	}
	n := 0
	for _, d := range b {
		switch {
		case d >= '0' && d <= '9':
			n = n*16 + int(d-'0')
		case d|0x20 >= 'a' && d|0x20 <= 'f':
			n = n*16 + int(d|0x20-'a'+10)
		default:
			return 0, false
		}
	}
	return n, true
}

// equalFold reports whether b equals the ASCII string s ignoring case.
func equalFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		x, y := b[i], s[i]
		if x == y {
			continue
		}
		// |0x20 lower-cases a letter; anything else must match exactly.
		if x|0x20 != y|0x20 || x|0x20 < 'a' || x|0x20 > 'z' {
			return false
		}
	}
	return true
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
