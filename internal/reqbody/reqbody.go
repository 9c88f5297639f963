// Package reqbody reads an HTTP request body, up to a size limit, into a
// buffer of the size the request declared. Growing a buffer by doubling
// while a body arrives costs up to twice the body, and a body that stops
// arriving holds that buffer for as long as its connection lives; a buffer
// of the declared size, allocated once, costs the body's size and no more.
// Only the first FirstBuffer bytes are allocated before any arrive, so
// headers declaring a large body pin no more than that.
package reqbody

import (
	"errors"
	"io"
	"net/http"
	"unsafe"
)

// ErrTooLarge is returned when a body is larger than the limit.
var ErrTooLarge = errors.New("reqbody: request body larger than the limit")

// unknownStart is the first buffer for a body of undeclared length
// (chunked); it doubles from there, never past the limit.
const unknownStart = 512

// FirstBuffer is the most a body gets before its bytes arrive; a larger
// declared body grows from there, up to its declared length, as it does.
const FirstBuffer = 64 << 10

// Read reads r's whole body, at most limit bytes, and returns it as a
// string that shares the one buffer it was read into (the buffer is never
// written again). A request without a body reads as "".
//
// Errors: ErrTooLarge when the declared Content-Length, or the bytes
// actually sent, exceed limit (nothing is read when the declared length
// does); otherwise the body's own read error, for example one wrapping
// os.ErrDeadlineExceeded when the connection's read deadline passed first.
func Read(r *http.Request, limit int) (string, error) {
	b, err := ReadBytes(r, limit)
	if err != nil || len(b) == 0 {
		return "", err
	}
	return unsafe.String(unsafe.SliceData(b), len(b)), nil
}

// ReadBytes is Read returning the buffer itself; nil for no body.
func ReadBytes(r *http.Request, limit int) ([]byte, error) {
	if r.Body == nil || r.Body == http.NoBody {
		return nil, nil
	}
	if r.ContentLength > int64(limit) {
		return nil, ErrTooLarge
	}
	size, want := unknownStart, limit
	if r.ContentLength > 0 {
		size, want = min(int(r.ContentLength), FirstBuffer), int(r.ContentLength)
	}
	return read(r.Body, min(size, limit), want, limit)
}

// read reads src to EOF into a buffer of capacity size, growing it (toward
// want, never past limit) only if src holds more than size bytes.
func read(src io.Reader, size, want, limit int) ([]byte, error) {
	buf := make([]byte, 0, size)
	for {
		if len(buf) == cap(buf) {
			// Full: a one-byte read says whether more follows, so that a
			// body of exactly the declared size never grows the buffer.
			var probe [1]byte
			if _, err := io.ReadFull(src, probe[:]); err != nil {
				if err == io.EOF {
					return buf, nil
				}
				return nil, err
			}
			if len(buf) >= limit {
				return nil, ErrTooLarge
			}
			next := max(2*cap(buf), unknownStart)
			if want > cap(buf) {
				next = min(next, want)
			}
			grown := make([]byte, len(buf), min(next, limit))
			copy(grown, buf)
			buf = append(grown, probe[0])
			continue
		}
		n, err := src.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return nil, err
		}
	}
}
