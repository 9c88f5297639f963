package snapsig

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"unicode/utf8"
)

// ErrNotJSON is Minify's error for a body that is not exactly one JSON
// value (RFC 8259) in UTF-8, optionally surrounded by whitespace.
var ErrNotJSON = errors.New("snapsig: request body is not one JSON value")

// MaxDepth is how deeply Minify lets arrays and objects nest, the same
// bound as encoding/json's.
const MaxDepth = 10000

// Minify removes the whitespace (space, tab, CR, LF) outside JSON strings,
// keeping member order, numbers and string contents (escapes included)
// byte for byte: the same bytes as encoding/json's Compact. An empty or
// all-whitespace body minifies to an empty slice. A body that is not one
// valid JSON value in valid UTF-8, or nests deeper than MaxDepth, returns
// ErrNotJSON.
//
// The result may share body's memory (when nothing, or only leading and
// trailing whitespace, is removed, it is a subslice of body); it must not
// be modified if body is still used.
func Minify(body []byte) ([]byte, error) {
	m := minifier{src: body}
	if err := m.run(); err != nil {
		return nil, err
	}
	return m.result(), nil
}

// BodyHash is Lowercase(HexEncode(SHA-256(minified))), the body's part of
// the string to sign. The empty body's hash is SHA-256 of the empty string.
func BodyHash(minified []byte) string {
	sum := sha256.Sum256(minified)
	return hex.EncodeToString(sum[:])
}

// minifier validates src and collects it without whitespace. It copies
// only when whitespace sits between two kept runs; a compact body (what
// SDKs send) costs no allocation.
type minifier struct {
	src   []byte
	start int    // where the kept run being scanned began
	first [2]int // the first kept run, while it is the only one
	runs  int    // kept runs so far
	out   []byte // the result once there are two kept runs
}

// drop removes src[i:j], ending the current kept run at i.
func (m *minifier) drop(i, j int) {
	if i > m.start {
		switch m.runs {
		case 0:
			m.first = [2]int{m.start, i}
		case 1:
			m.out = make([]byte, 0, len(m.src))
			m.out = append(m.out, m.src[m.first[0]:m.first[1]]...)
			fallthrough
		default:
			m.out = append(m.out, m.src[m.start:i]...)
		}
		m.runs++
	}
	m.start = j
}

func (m *minifier) result() []byte {
	switch m.runs {
	case 0:
		return []byte{}
	case 1:
		return m.src[m.first[0]:m.first[1]:m.first[1]]
	}
	return m.out
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// skipSpace drops the whitespace at i and returns the index after it.
func (m *minifier) skipSpace(i int) int {
	j := i
	for j < len(m.src) && isSpace(m.src[j]) {
		j++
	}
	if j > i {
		m.drop(i, j)
	}
	return j
}

// Parser states: what may come next.
const (
	wantValue      = iota // a value
	wantValueOrEnd        // a value or ']' (just after '[')
	wantKeyOrEnd          // a member name or '}' (just after '{')
	wantKey               // a member name (after ',' in an object)
	afterValue            // ',' or the end of the enclosing container, or the end of input at the top
)

// run checks src against the JSON grammar without recursion: containers
// open on a bit stack (1 = object) MaxDepth deep.
func (m *minifier) run() error {
	src := m.src
	var stack [MaxDepth/64 + 1]uint64
	depth := 0
	inObject := func() bool { return stack[(depth-1)/64]&(1<<((depth-1)%64)) != 0 }
	push := func(object bool) bool {
		if depth == MaxDepth {
			return false
		}
		w, b := depth/64, uint64(1)<<(depth%64)
		if object {
			stack[w] |= b
		} else {
			stack[w] &^= b
		}
		depth++
		return true
	}

	i := m.skipSpace(0)
	if i == len(src) {
		m.drop(i, i)
		return nil // empty body
	}
	state := wantValue
	for {
		i = m.skipSpace(i)
		if i == len(src) {
			if state == afterValue && depth == 0 {
				m.drop(i, i)
				return nil
			}
			return ErrNotJSON
		}
		c := src[i]
		switch state {
		case afterValue:
			switch {
			case depth == 0:
				return ErrNotJSON // data after the value
			case c == ',':
				i++
				if inObject() {
					state = wantKey
				} else {
					state = wantValue
				}
			case c == '}' && inObject(), c == ']' && !inObject():
				i++
				depth--
			default:
				return ErrNotJSON
			}
			continue
		case wantKeyOrEnd, wantKey:
			if c == '}' && state == wantKeyOrEnd {
				i++
				depth--
				state = afterValue
				continue
			}
			if c != '"' {
				return ErrNotJSON
			}
			var ok bool
			if i, ok = scanString(src, i); !ok {
				return ErrNotJSON
			}
			if i = m.skipSpace(i); i == len(src) || src[i] != ':' {
				return ErrNotJSON
			}
			i++
			state = wantValue
			continue
		case wantValueOrEnd:
			if c == ']' {
				i++
				depth--
				state = afterValue
				continue
			}
		}
		// A value.
		ok := true
		switch {
		case c == '{':
			ok, state = push(true), wantKeyOrEnd
			i++
		case c == '[':
			ok, state = push(false), wantValueOrEnd
			i++
		case c == '"':
			i, ok = scanString(src, i)
			state = afterValue
		case c == '-' || ('0' <= c && c <= '9'):
			i, ok = scanNumber(src, i)
			state = afterValue
		case c == 't':
			i, ok = scanLiteral(src, i, "true")
			state = afterValue
		case c == 'f':
			i, ok = scanLiteral(src, i, "false")
			state = afterValue
		case c == 'n':
			i, ok = scanLiteral(src, i, "null")
			state = afterValue
		default:
			ok = false
		}
		if !ok {
			return ErrNotJSON
		}
	}
}

// scanString checks the string starting with the quote at src[i] and
// returns the index after its closing quote.
func scanString(src []byte, i int) (int, bool) {
	i++
	for i < len(src) {
		c := src[i]
		switch {
		case c == '"':
			return i + 1, true
		case c == '\\':
			if i+1 >= len(src) {
				return i, false
			}
			switch src[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(src) {
					return i, false
				}
				for _, h := range src[i+2 : i+6] {
					if !isHex(h) {
						return i, false
					}
				}
				i += 6
			default:
				return i, false
			}
		case c < 0x20:
			return i, false
		case c < utf8.RuneSelf:
			i++
		default:
			r, size := utf8.DecodeRune(src[i:])
			if r == utf8.RuneError && size == 1 {
				return i, false
			}
			i += size
		}
	}
	return i, false
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// scanNumber checks -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? at
// src[i] and returns the index after it.
func scanNumber(src []byte, i int) (int, bool) {
	if src[i] == '-' {
		i++
	}
	switch {
	case i == len(src):
		return i, false
	case src[i] == '0':
		i++
	case isDigit(src[i]):
		for i < len(src) && isDigit(src[i]) {
			i++
		}
	default:
		return i, false
	}
	if i < len(src) && src[i] == '.' {
		i++
		j := i
		for i < len(src) && isDigit(src[i]) {
			i++
		}
		if i == j {
			return i, false
		}
	}
	if i < len(src) && (src[i] == 'e' || src[i] == 'E') {
		i++
		if i < len(src) && (src[i] == '+' || src[i] == '-') {
			i++
		}
		j := i
		for i < len(src) && isDigit(src[i]) {
			i++
		}
		if i == j {
			return i, false
		}
	}
	return i, true
}

func scanLiteral(src []byte, i int, lit string) (int, bool) {
	if len(src)-i < len(lit) || string(src[i:i+len(lit)]) != lit {
		return i, false
	}
	return i + len(lit), true
}
