package sqlite

import "testing"

// FuzzParseCursor: cursors come from subscribers (Last-Event-ID). Parsing
// never panics, and accepts only the canonical form formatCursor writes.
func FuzzParseCursor(f *testing.F) {
	for _, s := range []string{"0", "7", "9223372036854775807", "9223372036854775808", "07", "-1", "+1", "1e3", " 1", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, ok := parseCursor(s)
		if ok && (formatCursor(n) != s || n < 0) {
			t.Fatalf("parseCursor(%q) accepted a non-canonical cursor (%d)", s, n)
		}
	})
}
