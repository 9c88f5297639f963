package postgres

import "testing"

// FuzzParseCursor: cursors come from subscribers (Last-Event-ID). Parsing
// never panics, and accepts only the canonical form String writes.
func FuzzParseCursor(f *testing.F) {
	for _, s := range []string{"0.0", "27793.3", "18446744073709551615.9223372036854775807", "1.01", "-1.1", "1", ".", "1.", ".1", "1.2.3"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, ok := parseCursor(s)
		if ok && p.String() != s {
			t.Fatalf("parseCursor(%q) accepted a non-canonical cursor (%q)", s, p.String())
		}
		if q, ok := parseCursor(p.String()); ok && q != p {
			t.Fatalf("round trip of %v gave %v", p, q)
		}
	})
}
