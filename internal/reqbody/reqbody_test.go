package reqbody

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strings"
	"testing"
	"testing/iotest"
)

func request(body io.Reader, declared int64) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/", nil)
	r.Body = io.NopCloser(body)
	r.ContentLength = declared
	return r
}

func TestReadDeclaredLengthIsOneExactAllocation(t *testing.T) {
	body := strings.Repeat("a", 65536)
	b, err := read(iotest.HalfReader(strings.NewReader(body)), len(body), len(body), 64<<10)
	if err != nil || string(b) != body {
		t.Fatalf("read: %d bytes, %v", len(b), err)
	}
	if cap(b) != len(body) {
		t.Errorf("buffer capacity %d for a declared %d-byte body", cap(b), len(body))
	}
	// Bytes, not allocations: a reader that does not say EOF with its last
	// bytes (net/http's body does) costs one probe byte more.
	src := strings.NewReader(body)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	const runs = 20
	for range runs {
		src.Reset(body)
		read(src, len(body), len(body), 64<<10)
	}
	runtime.ReadMemStats(&after)
	if per := (after.TotalAlloc - before.TotalAlloc) / runs; per > uint64(len(body))+64 {
		t.Errorf("%d bytes allocated to read a declared %d-byte body", per, len(body))
	}
}

func TestRead(t *testing.T) {
	const limit = 1000
	for _, tc := range []struct {
		name     string
		body     string
		declared int64
		want     string
		err      error
	}{
		{"empty declared", "", 0, "", nil},
		{"declared", "grant_type=x", 12, "grant_type=x", nil},
		{"exactly the limit", strings.Repeat("b", limit), limit, strings.Repeat("b", limit), nil},
		{"declared over the limit", strings.Repeat("b", limit+1), limit + 1, "", ErrTooLarge},
		{"unknown length", strings.Repeat("c", 700), -1, strings.Repeat("c", 700), nil},
		{"unknown length at the limit", strings.Repeat("c", limit), -1, strings.Repeat("c", limit), nil},
		{"unknown length over the limit", strings.Repeat("c", limit+1), -1, "", ErrTooLarge},
		// Only a hand-made request can carry more than it declares.
		{"more than declared", strings.Repeat("d", 600), 10, strings.Repeat("d", 600), nil},
		{"more than declared, over the limit", strings.Repeat("d", 5000), 10, "", ErrTooLarge},
		{"less than declared", "abc", 100, "abc", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Read(request(iotest.OneByteReader(strings.NewReader(tc.body)), tc.declared), limit)
			if got != tc.want || !errors.Is(err, tc.err) {
				t.Errorf("Read = %d bytes, %v; want %d bytes, %v", len(got), err, len(tc.want), tc.err)
			}
		})
	}
}

func TestReadDeclaredTooLargeReadsNothing(t *testing.T) {
	src := iotest.ErrReader(errors.New("read"))
	if _, err := Read(request(src, 1<<20), 64<<10); err != ErrTooLarge {
		t.Errorf("Read = %v, want ErrTooLarge", err)
	}
}

func TestReadNoBody(t *testing.T) {
	for _, r := range []*http.Request{httptest.NewRequest(http.MethodPost, "/", nil), {Body: nil}} {
		if got, err := Read(r, 10); got != "" || err != nil {
			t.Errorf("Read = %q, %v", got, err)
		}
	}
}

func TestReadPassesReadErrorsOn(t *testing.T) {
	src := io.MultiReader(strings.NewReader("part"), iotest.ErrReader(os.ErrDeadlineExceeded))
	if _, err := Read(request(src, 100), 1000); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("Read = %v, want the deadline error", err)
	}
}

// FuzzRead: whatever the declared length, chunking and limit, Read returns
// the body or ErrTooLarge exactly when it is over the limit, and its
// buffer never exceeds the limit.
func FuzzRead(f *testing.F) {
	f.Add([]byte("grant_type=client_credentials"), int64(29), uint16(100), uint8(3))
	f.Add([]byte(""), int64(-1), uint16(0), uint8(1))
	f.Add(bytes.Repeat([]byte("x"), 600), int64(-1), uint16(599), uint8(0))
	f.Fuzz(func(t *testing.T, data []byte, declared int64, limit uint16, chunk uint8) {
		var src io.Reader = bytes.NewReader(data)
		if chunk > 0 {
			src = &chunked{src, int(chunk)}
		}
		got, err := Read(request(src, declared), int(limit))
		switch {
		case declared > int64(limit) || len(data) > int(limit):
			if err != ErrTooLarge {
				t.Fatalf("%d bytes (declared %d) at limit %d: %v", len(data), declared, limit, err)
			}
		case err != nil || got != string(data):
			t.Fatalf("%d bytes (declared %d) at limit %d: got %d bytes, %v", len(data), declared, limit, len(got), err)
		}
	})
}

type chunked struct {
	r io.Reader
	n int
}

func (c *chunked) Read(p []byte) (int, error) { return c.r.Read(p[:min(len(p), c.n)]) }

// A body's memory grows as its bytes arrive: headers declaring a large
// body, followed by a few bytes, do not get the declared length at once;
// a large body that does arrive ends in a buffer of its declared length.
func TestReadDeclaredLargeAllocatesAsBytesArrive(t *testing.T) {
	const declared = 8 << 20
	src := io.MultiReader(strings.NewReader("{}"), iotest.ErrReader(io.ErrUnexpectedEOF))
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	if _, err := ReadBytes(request(src, declared), declared); err == nil {
		t.Fatal("a body that stops after 2 bytes read without error")
	}
	runtime.ReadMemStats(&after)
	if n := after.TotalAlloc - before.TotalAlloc; n > 1<<20 {
		t.Errorf("2 bytes of a body declared %d bytes long took %d bytes", declared, n)
	}
	body := strings.Repeat("x", 300<<10)
	b, err := ReadBytes(request(iotest.HalfReader(strings.NewReader(body)), int64(len(body))), 1<<20)
	if err != nil || string(b) != body || cap(b) != len(body) {
		t.Errorf("a 300 KiB body: %d bytes in a buffer of %d, %v", len(b), cap(b), err)
	}
}
