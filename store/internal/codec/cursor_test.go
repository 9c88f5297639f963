package codec

import "testing"

// FuzzParseCursor: cursors come from subscribers (Last-Event-ID). Parsing
// never panics, and accepts only the canonical form FormatCursor writes.
func FuzzParseCursor(f *testing.F) {
	for _, s := range []string{"0", "7", "27793", "9223372036854775807", "9223372036854775808", "01", "07", "-1", "+1", "",
		"27793.3", "1.01", " 1", "1e3"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, ok := ParseCursor(s)
		if !ok {
			return
		}
		if p < 0 || FormatCursor(p) != s {
			t.Fatalf("ParseCursor(%q) accepted a non-canonical cursor (%d)", s, p)
		}
		if q, ok := ParseCursor(FormatCursor(p)); !ok || q != p {
			t.Fatalf("round trip of %d gave %d, %v", p, q, ok)
		}
	})
}

// TestParseCursorRefusesOldForm: the "xid.seq" cursors PostgreSQL's
// migration 00004 gave out are refused (the subscriber gets a reset), not
// read as a position.
func TestParseCursorRefusesOldForm(t *testing.T) {
	for _, c := range []string{"27793.3", "0.0", "1.1"} {
		if p, ok := ParseCursor(c); ok {
			t.Errorf("ParseCursor(%q) = %d, want refused", c, p)
		}
	}
	if p, ok := ParseCursor("27793"); !ok || p != 27793 {
		t.Errorf("ParseCursor(27793) = %d, %v", p, ok)
	}
}
