package jsonx

import (
	"errors"
	"iter"
	"slices"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// MaxDepth is how deeply ReadObject lets objects and arrays nest; the
// top-level object is at depth 1. Request bodies of every dialect are flat,
// so a small bound costs nothing and keeps recursion short.
const MaxDepth = 32

// Errors of ReadObject besides *SyntaxError and *DuplicateKeyError.
var (
	// ErrNotObject: the body (after white space) does not start with '{';
	// this includes an empty body.
	ErrNotObject = errors.New("jsonx: the body is not a JSON object")
	// ErrTrailingData: something other than white space follows the object.
	ErrTrailingData = errors.New("jsonx: data after the JSON object")
	// ErrTooDeep: objects and arrays nest deeper than MaxDepth.
	ErrTooDeep = errors.New("jsonx: objects and arrays nested deeper than 32")
)

// SyntaxError reports text that is not RFC 8259 JSON in UTF-8: a grammar
// error, invalid UTF-8 (including encoded surrogates and overlong forms), a
// raw control character in a string, an unknown escape, or a \u escape of a
// lone or misordered surrogate. Its message is fixed text and an offset,
// never a piece of the input.
type SyntaxError struct {
	Offset int // byte offset of the offending input
	msg    string
}

func (e *SyntaxError) Error() string {
	return "jsonx: " + e.msg + " at offset " + strconv.Itoa(e.Offset)
}

// DuplicateKeyError reports an object that names a member twice. Names are
// compared after unescaping, so "a" and "\u0061" are the same name. The
// message leaves the name out (it is client text and could be a pasted
// secret); Key carries it for the caller to show if it wants to.
type DuplicateKeyError struct {
	Key    string // the repeated name, unescaped
	Nested bool   // in a nested object rather than among the top-level members
	Offset int    // byte offset of the second occurrence
}

func (e *DuplicateKeyError) Error() string {
	if e.Nested {
		return "jsonx: a member name is repeated in a nested object at offset " + strconv.Itoa(e.Offset)
	}
	return "jsonx: a member name is repeated at offset " + strconv.Itoa(e.Offset)
}

// Kind is the JSON type of a Value.
type Kind uint8

const (
	KindNone   Kind = iota // the zero Value: no such member
	KindNull               // null
	KindBool               // true or false
	KindNumber             // a number, as RFC 8259 §6 spells it
	KindString             // a string
	KindArray              // an array
	KindObject             // an object
)

// Object is the top-level object ReadObject read: its members in document
// order, with distinct names. The zero Object has no members.
type Object struct{ members []Member }

// Member is one name/value pair of an Object.
type Member struct {
	Name  string // unescaped
	Value Value
}

// Len returns the number of members.
func (o Object) Len() int { return len(o.members) }

// Get returns the member named name (compared after unescaping) and whether
// there is one.
func (o Object) Get(name string) (Value, bool) {
	for i := range o.members {
		if o.members[i].Name == name {
			return o.members[i].Value, true
		}
	}
	return Value{}, false
}

// All iterates over the members in document order.
func (o Object) All() iter.Seq2[string, Value] {
	return func(yield func(string, Value) bool) {
		for _, m := range o.members {
			if !yield(m.Name, m.Value) {
				return
			}
		}
	}
}

// Value is one member's value. It was validated with the whole body, so
// every accessor below either succeeds or reports a kind mismatch.
type Value struct {
	raw     string // the value's JSON text, a slice of the body
	kind    Kind
	escaped bool // a string holding at least one escape
}

// Kind returns the JSON type of v; KindNone for the zero Value.
func (v Value) Kind() Kind { return v.kind }

// Raw returns v's JSON text as it appears in the body (for a number, its
// digits; for an object or array, the whole nested text, which obeys the
// same rules as the body: valid UTF-8, distinct names, bounded depth).
func (v Value) Raw() string { return v.raw }

// IsNull reports whether v is the literal null.
func (v Value) IsNull() bool { return v.kind == KindNull }

// IsString reports whether v is a string.
func (v Value) IsString() bool { return v.kind == KindString }

// IsObject reports whether v is an object.
func (v Value) IsObject() bool { return v.kind == KindObject }

// Str returns the unescaped content of a string value, and false if v is
// not a string. A string without escapes is a slice of the body, not a copy.
func (v Value) Str() (string, bool) {
	if v.kind != KindString {
		return "", false
	}
	if !v.escaped {
		return v.raw[1 : len(v.raw)-1], true
	}
	p := scanner{s: v.raw}
	s, _, err := p.str(true)
	return s, err == nil
}

// StringArray returns the unescaped elements of an array of strings, and
// false if v is not an array or has an element that is not a string. An
// empty array gives (nil, true).
func (v Value) StringArray() ([]string, bool) {
	if v.kind != KindArray {
		return nil, false
	}
	p := scanner{s: v.raw, i: 1}
	p.ws()
	if p.eat(']') {
		return nil, true
	}
	var out []string
	for {
		p.ws()
		if p.peek() != '"' {
			return nil, false
		}
		s, _, err := p.str(true)
		if err != nil {
			return nil, false
		}
		out = append(out, s)
		p.ws()
		if p.eat(',') {
			continue
		}
		return out, p.eat(']')
	}
}

// Object returns the members of an object value, and false if v is not an
// object.
func (v Value) Object() (Object, bool) {
	if v.kind != KindObject {
		return Object{}, false
	}
	o, err := ReadObject(v.raw)
	return o, err == nil
}

// ReadObject reads a body that must be exactly one JSON object (RFC 8259),
// optionally surrounded by white space. It is stricter than encoding/json,
// so that no two readers of a request can disagree about it: it refuses
// invalid UTF-8 anywhere (encoding/json replaces it with U+FFFD), \u escapes
// of lone surrogates (same), a member name repeated in any object, even
// when spelled with different escapes (encoding/json keeps the last one),
// and nesting deeper than MaxDepth.
//
// Errors: ErrNotObject, ErrTrailingData, ErrTooDeep, *SyntaxError,
// *DuplicateKeyError. The returned Object slices body; strings without
// escapes are not copied.
func ReadObject(body string) (Object, error) {
	p := scanner{s: body}
	p.ws()
	if p.peek() != '{' {
		return Object{}, ErrNotObject
	}
	members := make([]Member, 0, 8)
	if err := p.object(&members); err != nil {
		return Object{}, err
	}
	p.ws()
	if p.i != len(p.s) {
		return Object{}, ErrTrailingData
	}
	return Object{members}, nil
}

type scanner struct {
	s     string
	i     int
	depth int
	// keys holds the member names read so far of each nested object being
	// read, innermost object last, for the duplicate check.
	keys []string
}

// linearKeys is how many names of one object are checked for duplicates by
// a linear search before a map takes over.
const linearKeys = 16

func (p *scanner) fail(msg string) error { return &SyntaxError{Offset: p.i, msg: msg} }

func (p *scanner) failAt(i int, msg string) error { return &SyntaxError{Offset: i, msg: msg} }

func (p *scanner) peek() byte {
	if p.i < len(p.s) {
		return p.s[p.i]
	}
	return 0
}

func (p *scanner) eat(c byte) bool {
	if p.i < len(p.s) && p.s[p.i] == c {
		p.i++
		return true
	}
	return false
}

func (p *scanner) ws() {
	for p.i < len(p.s) {
		switch p.s[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

// object reads the object at p.i ('{'), appending its members to *out if
// out is not nil (the top level) and only validating it otherwise.
func (p *scanner) object(out *[]Member) error {
	if p.depth++; p.depth > MaxDepth {
		return ErrTooDeep
	}
	p.i++
	base := len(p.keys)
	var seen map[string]struct{}
	p.ws()
	if p.eat('}') {
		p.depth--
		return nil
	}
	for {
		p.ws()
		at := p.i
		if p.peek() != '"' {
			return p.fail("expected a member name")
		}
		key, _, err := p.str(true)
		if err != nil {
			return err
		}
		// The names read so far are in *out at the top level (which saves
		// an allocation for flat bodies) and in p.keys below it.
		n := len(p.keys) - base
		if out != nil {
			n = len(*out)
		}
		switch {
		case seen != nil:
			if _, dup := seen[key]; dup {
				return &DuplicateKeyError{Key: key, Nested: out == nil, Offset: at}
			}
			seen[key] = struct{}{}
		case out != nil && slices.ContainsFunc(*out, func(m Member) bool { return m.Name == key }),
			out == nil && slices.Contains(p.keys[base:], key):
			return &DuplicateKeyError{Key: key, Nested: out == nil, Offset: at}
		case n < linearKeys:
			if out == nil {
				p.keys = append(p.keys, key)
			}
		default:
			seen = make(map[string]struct{}, 2*linearKeys)
			if out != nil {
				for _, m := range *out {
					seen[m.Name] = struct{}{}
				}
			} else {
				for _, k := range p.keys[base:] {
					seen[k] = struct{}{}
				}
			}
			seen[key] = struct{}{}
		}
		p.ws()
		if !p.eat(':') {
			return p.fail("expected ':' after a member name")
		}
		p.ws()
		start := p.i
		kind, escaped, err := p.value()
		if err != nil {
			return err
		}
		if out != nil {
			*out = append(*out, Member{Name: key, Value: Value{raw: p.s[start:p.i], kind: kind, escaped: escaped}})
		}
		p.ws()
		if p.eat(',') {
			continue
		}
		if p.eat('}') {
			p.keys = p.keys[:base]
			p.depth--
			return nil
		}
		return p.fail("expected ',' or '}' after an object member")
	}
}

func (p *scanner) array() error {
	if p.depth++; p.depth > MaxDepth {
		return ErrTooDeep
	}
	p.i++
	p.ws()
	if p.eat(']') {
		p.depth--
		return nil
	}
	for {
		p.ws()
		if _, _, err := p.value(); err != nil {
			return err
		}
		p.ws()
		if p.eat(',') {
			continue
		}
		if p.eat(']') {
			p.depth--
			return nil
		}
		return p.fail("expected ',' or ']' after an array element")
	}
}

// value validates the value at p.i and moves past it.
func (p *scanner) value() (kind Kind, escaped bool, err error) {
	switch c := p.peek(); {
	case c == '"':
		_, escaped, err = p.str(false)
		return KindString, escaped, err
	case c == '{':
		return KindObject, false, p.object(nil)
	case c == '[':
		return KindArray, false, p.array()
	case c == 't':
		return KindBool, false, p.literal("true")
	case c == 'f':
		return KindBool, false, p.literal("false")
	case c == 'n':
		return KindNull, false, p.literal("null")
	case c == '-' || '0' <= c && c <= '9':
		return KindNumber, false, p.number()
	}
	return KindNone, false, p.fail("expected a value")
}

func (p *scanner) literal(lit string) error {
	if !strings.HasPrefix(p.s[p.i:], lit) {
		return p.fail("invalid literal")
	}
	p.i += len(lit)
	return nil
}

// number reads RFC 8259 §6: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func (p *scanner) number() error {
	s, i := p.s, p.i
	if s[i] == '-' {
		i++
	}
	switch {
	case i < len(s) && s[i] == '0':
		i++
	case i < len(s) && '1' <= s[i] && s[i] <= '9':
		i = digits(s, i+1)
	default:
		return p.failAt(i, "invalid number")
	}
	if i < len(s) && s[i] == '.' {
		j := digits(s, i+1)
		if j == i+1 {
			return p.failAt(j, "invalid number")
		}
		i = j
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		j := digits(s, i)
		if j == i {
			return p.failAt(j, "invalid number")
		}
		i = j
	}
	p.i = i
	return nil
}

func digits(s string, i int) int {
	for i < len(s) && '0' <= s[i] && s[i] <= '9' {
		i++
	}
	return i
}

// str reads the string at p.i ('"'). With decode it returns the unescaped
// content: a slice of p.s when there is no escape. It also reports whether
// the string holds an escape.
func (p *scanner) str(decode bool) (string, bool, error) {
	s := p.s
	start := p.i + 1
	for i := start; i < len(s); {
		c := s[i]
		switch {
		case c == '"':
			p.i = i + 1
			return s[start:i], false, nil
		case c == '\\':
			return p.strEscaped(start, i, decode)
		case c < 0x20:
			return "", false, p.failAt(i, "control character in a string")
		case c < utf8.RuneSelf:
			i++
		default:
			r, n := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && n == 1 {
				return "", false, p.failAt(i, "invalid UTF-8")
			}
			i += n
		}
	}
	return "", false, p.failAt(len(s), "unterminated string")
}

// strEscaped continues str from the first escape, at i; s[start:i] is
// already known to be plain.
func (p *scanner) strEscaped(start, i int, decode bool) (string, bool, error) {
	s := p.s
	var b []byte
	if decode {
		b = make([]byte, 0, i-start+16)
	}
	run := start // start of the plain text not yet copied to b
	for i < len(s) {
		c := s[i]
		switch {
		case c == '"':
			p.i = i + 1
			if !decode {
				return "", true, nil
			}
			b = append(b, s[run:i]...)
			return string(b), true, nil
		case c < 0x20:
			return "", false, p.failAt(i, "control character in a string")
		case c == '\\':
			if decode {
				b = append(b, s[run:i]...)
			}
			if i+1 >= len(s) {
				return "", false, p.failAt(i, "unterminated string")
			}
			var r rune
			n := 2
			switch s[i+1] {
			case '"', '\\', '/':
				r = rune(s[i+1])
			case 'b':
				r = '\b'
			case 'f':
				r = '\f'
			case 'n':
				r = '\n'
			case 'r':
				r = '\r'
			case 't':
				r = '\t'
			case 'u':
				var ok bool
				if r, ok = hex4(s, i+2); !ok {
					return "", false, p.failAt(i, `invalid \u escape`)
				}
				n = 6
				switch {
				case utf16.IsSurrogate(r) && r < 0xdc00:
					// A high surrogate must be followed by an escaped low one.
					if i+n+1 >= len(s) || s[i+n] != '\\' || s[i+n+1] != 'u' {
						return "", false, p.failAt(i, "lone surrogate escape")
					}
					r2, ok := hex4(s, i+n+2)
					if !ok || r2 < 0xdc00 || r2 > 0xdfff {
						return "", false, p.failAt(i, "lone surrogate escape")
					}
					r = utf16.DecodeRune(r, r2)
					n = 12
				case utf16.IsSurrogate(r):
					return "", false, p.failAt(i, "lone surrogate escape")
				}
			default:
				return "", false, p.failAt(i, "invalid escape")
			}
			if decode {
				b = utf8.AppendRune(b, r)
			}
			i += n
			run = i
		case c < utf8.RuneSelf:
			i++
		default:
			r, n := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && n == 1 {
				return "", false, p.failAt(i, "invalid UTF-8")
			}
			i += n
		}
	}
	return "", false, p.failAt(len(s), "unterminated string")
}

func hex4(s string, i int) (rune, bool) {
	if i+4 > len(s) {
		return 0, false
	}
	var r rune
	for j := i; j < i+4; j++ {
		c := s[j]
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}
