package jsonx

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"unsafe"
)

func TestReadObjectMembers(t *testing.T) {
	body := ` {"s":"x", "e":"a\u00e9\n", "o":{"c":[1,{"d":null}]}, "a":["p","q\/"], "n":null,` +
		`"t":true,"f":false,"num":-1.5e+3,"z":0,"mix":["a",1],"empty":[] } `
	o, err := ReadObject(body)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for name := range o.All() {
		names = append(names, name)
	}
	if want := []string{"s", "e", "o", "a", "n", "t", "f", "num", "z", "mix", "empty"}; !slices.Equal(names, want) || o.Len() != len(want) {
		t.Fatalf("members %q", names)
	}
	kinds := map[string]Kind{"s": KindString, "e": KindString, "o": KindObject, "a": KindArray, "n": KindNull,
		"t": KindBool, "f": KindBool, "num": KindNumber, "z": KindNumber, "mix": KindArray, "empty": KindArray}
	for name, k := range kinds {
		if v, ok := o.Get(name); !ok || v.Kind() != k {
			t.Errorf("%s: kind %d, want %d", name, v.Kind(), k)
		}
	}
	get := func(name string) Value { v, _ := o.Get(name); return v }
	if s, ok := get("s").Str(); !ok || s != "x" {
		t.Errorf("s = %q %v", s, ok)
	}
	if s, ok := get("e").Str(); !ok || s != "aé\n" {
		t.Errorf("e = %q %v", s, ok)
	}
	if s, ok := get("num").Str(); ok || s != "" {
		t.Errorf("Str of a number: %q %v", s, ok)
	}
	if r := get("o").Raw(); r != `{"c":[1,{"d":null}]}` {
		t.Errorf("raw o = %s", r)
	}
	if r := get("num").Raw(); r != "-1.5e+3" {
		t.Errorf("raw num = %s", r)
	}
	if !get("n").IsNull() || get("s").IsNull() || !get("o").IsObject() || get("a").IsObject() || !get("s").IsString() {
		t.Error("Is* helpers")
	}
	if a, ok := get("a").StringArray(); !ok || !slices.Equal(a, []string{"p", "q/"}) {
		t.Errorf("a = %q %v", a, ok)
	}
	if a, ok := get("empty").StringArray(); !ok || a != nil {
		t.Errorf("empty = %q %v", a, ok)
	}
	for _, name := range []string{"mix", "s", "o", "n"} {
		if a, ok := get(name).StringArray(); ok || a != nil {
			t.Errorf("StringArray of %s: %q %v", name, a, ok)
		}
	}
	inner, ok := get("o").Object()
	if c, _ := inner.Get("c"); !ok || inner.Len() != 1 || c.Raw() != `[1,{"d":null}]` {
		t.Errorf("o.Object() = %+v %v", inner, ok)
	}
	if _, ok := get("a").Object(); ok {
		t.Error("Object of an array")
	}
	if v, ok := o.Get("missing"); ok || v.Kind() != KindNone || v.IsNull() {
		t.Errorf("missing member: %+v %v", v, ok)
	}
	empty, err := ReadObject("{}")
	if err != nil || empty.Len() != 0 {
		t.Errorf("{}: %v", err)
	}
}

// A string without escapes is a slice of the body, not a copy, and reading
// a plain body allocates only the member list.
func TestReadObjectDoesNotCopyPlainStrings(t *testing.T) {
	body := `{"client_id":"merchant-42","scope":"a b"}`
	o, err := ReadObject(body)
	if err != nil {
		t.Fatal(err)
	}
	v, _ := o.Get("client_id")
	s, _ := v.Str()
	base := uintptr(unsafe.Pointer(unsafe.StringData(body)))
	if p := uintptr(unsafe.Pointer(unsafe.StringData(s))); p < base || p >= base+uintptr(len(body)) {
		t.Error("the value was copied")
	}
	for name := range o.All() {
		if p := uintptr(unsafe.Pointer(unsafe.StringData(name))); p < base || p >= base+uintptr(len(body)) {
			t.Errorf("the name %q was copied", name)
		}
	}
	n := testing.AllocsPerRun(100, func() {
		o, _ := ReadObject(body)
		v, _ := o.Get("scope")
		_, _ = v.Str()
	})
	if n > 1 {
		t.Errorf("%v allocations", n)
	}
}

func TestReadObjectStrings(t *testing.T) {
	for _, tt := range []struct {
		in   string // a JSON string literal
		want string
	}{
		{`""`, ""},
		{`"\b\f\n\r\t\"\\\/"`, "\b\f\n\r\t\"\\/"},
		{`"x\u00E9\u20ac"`, "xé€"},
		{`"\ud83d\ude00é"`, "😀é"},
		{`"\uD83D\uDE00"`, "😀"},
		{`"é\n"`, "é\n"},
		{`"\u0000"`, "\x00"}, // an escaped NUL is JSON; a raw one is not
		{`"\u001f\u007f"`, "\x1f\x7f"},
		{"\"\x7f\"", "\x7f"},
		{`"\ufffd"`, "\ufffd"},
		{"\"\xef\xbf\xbd\"", "\ufffd"},
		{`"\uffff"`, "\uffff"},
		{"\"\xf4\x8f\xbf\xbf\"", "\U0010FFFF"},
		{`"\udbff\udfff"`, "\U0010FFFF"},
		{`"a\\u0041"`, `a\u0041`},
	} {
		o, err := ReadObject(`{"k":` + tt.in + `}`)
		if err != nil {
			t.Errorf("%s: %v", tt.in, err)
			continue
		}
		v, _ := o.Get("k")
		if got, ok := v.Str(); !ok || got != tt.want {
			t.Errorf("%s = %q, want %q", tt.in, got, tt.want)
		}
		// The same string as a member name decodes the same.
		o, err = ReadObject(`{` + tt.in + `:1}`)
		if _, ok := o.Get(tt.want); err != nil || !ok {
			t.Errorf("name %s: %v", tt.in, err)
		}
	}
}

// hostile are inputs that two JSON readers commonly disagree on; ReadObject
// refuses each, as a member value and as a member name, with a
// *SyntaxError whose reason is given.
var hostile = []struct{ name, in, reason string }{
	{"lone high surrogate", `"\ud800"`, "lone surrogate"},
	{"lone low surrogate", `"\udc00"`, "lone surrogate"},
	{"high surrogate then letter", `"\ud800\u0041"`, "lone surrogate"},
	{"high surrogate then text", `"\ud83dx"`, "lone surrogate"},
	{"high surrogate then other escape", `"\ud83d\n"`, "lone surrogate"},
	{"two high surrogates", `"\ud800\ud800"`, "lone surrogate"},
	{"swapped pair", `"\ude00\ud83d"`, "lone surrogate"},
	{"high surrogate at end", `"\ud83d`, "lone surrogate"},
	{"raw 0xff", "\"\xff\"", "invalid UTF-8"},
	{"raw 0xff after escape", "\"\\n\xff\"", "invalid UTF-8"},
	{"raw continuation byte", "\"\x80\"", "invalid UTF-8"},
	{"truncated sequence", "\"\xc3\"", "invalid UTF-8"},
	{"CESU-8 surrogate bytes", "\"\xed\xa0\x80\"", "invalid UTF-8"},
	{"CESU-8 surrogate pair", "\"\xed\xa0\xbd\xed\xb8\x80\"", "invalid UTF-8"},
	{"overlong NUL", "\"\xc0\x80\"", "invalid UTF-8"},
	{"overlong slash", "\"\xc0\xaf\"", "invalid UTF-8"},
	{"overlong 3 bytes", "\"\xe0\x80\xaf\"", "invalid UTF-8"},
	{"overlong 4 bytes", "\"\xf0\x80\x80\xaf\"", "invalid UTF-8"},
	{"beyond U+10FFFF", "\"\xf4\x90\x80\x80\"", "invalid UTF-8"},
	{"raw NUL", "\"a\x00b\"", "control character"},
	{"raw newline", "\"a\nb\"", "control character"},
	{"raw tab", "\"a\tb\"", "control character"},
	{"raw control after escape", "\"\\n\x01\"", "control character"},
	{"unknown escape", `"\x41"`, "invalid escape"},
	{"escaped single quote", `"\'"`, "invalid escape"},
	{"short \\u", `"\u12"`, `invalid \u escape`},
	{"bad hex", `"\u12zz"`, `invalid \u escape`},
	{"unterminated", `"abc`, ""},
	{"unterminated escape", `"\`, ""},
}

func TestReadObjectRefusesHostileStrings(t *testing.T) {
	for _, tt := range hostile {
		for _, body := range []string{`{"k":` + tt.in + `}`, `{` + tt.in + `:"v"}`, `{"k":[{"x":` + tt.in + `}]}`} {
			_, err := ReadObject(body)
			var se *SyntaxError
			if !errors.As(err, &se) || !strings.Contains(se.msg, tt.reason) {
				t.Errorf("%s: %q: %v, want a syntax error (%s)", tt.name, body, err, tt.reason)
			}
		}
	}
}

func TestReadObjectRefuses(t *testing.T) {
	syntax := new(*SyntaxError)
	for _, tt := range []struct {
		in   string
		want any // a sentinel error or a pointer to an error type
	}{
		{``, ErrNotObject},
		{`   `, ErrNotObject},
		{`[]`, ErrNotObject},
		{`"s"`, ErrNotObject},
		{`null`, ErrNotObject},
		{"\xef\xbb\xbf{}", ErrNotObject}, // a BOM
		{`{"a":1} {}`, ErrTrailingData},
		{`{"a":1}x`, ErrTrailingData},
		{"{}\x00", ErrTrailingData},
		{`{"a":}`, syntax},
		{`{"a":1`, syntax},
		{`{"a" 1}`, syntax},
		{`{"a":1,}`, syntax},
		{`{,}`, syntax},
		{`{a:1}`, syntax},
		{`{'a':1}`, syntax},
		{`{"a":[1,]}`, syntax},
		{`{"a":[1 2]}`, syntax},
		{`{"a":[}`, syntax},
		{`{"a":tru}`, syntax},
		{`{"a":True}`, syntax},
		{`{"a":nul}`, syntax},
		{`{"a":01}`, syntax},
		{`{"a":-}`, syntax},
		{`{"a":+1}`, syntax},
		{`{"a":1.}`, syntax},
		{`{"a":.5}`, syntax},
		{`{"a":1e}`, syntax},
		{`{"a":1e+}`, syntax},
		{`{"a":0x10}`, syntax},
		{`{"a":NaN}`, syntax},
		{`{"a":Infinity}`, syntax},
		{"{\"a\":1\x0b}", syntax}, // vertical tab is not JSON white space
		{"{\"a\":\u00a01}", syntax},
		{"{\"a\":1}\xff", ErrTrailingData},
	} {
		_, err := ReadObject(tt.in)
		switch w := tt.want.(type) {
		case error:
			if !errors.Is(err, w) {
				t.Errorf("%q: %v, want %v", tt.in, err, w)
			}
		case **SyntaxError:
			if !errors.As(err, w) {
				t.Errorf("%q: %v, want a syntax error", tt.in, err)
			}
		}
	}
	for _, ok := range []string{`{"a":0}`, `{"a":-0.0e-0}`, `{"a":1E5}`, `{"a":123.456e+78}`, "\t\r\n {\t\"a\"\r:\n[ ]\t}\r\n"} {
		if _, err := ReadObject(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
}

func TestReadObjectDuplicates(t *testing.T) {
	name := func(i int) string { return "k" + strings.Repeat("x", i) }
	many := func(n int) string { // {"k":0,"kx":0,"kxx":0,...}
		var b strings.Builder
		b.WriteByte('{')
		for i := range n {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(`"` + name(i) + `":0`)
		}
		b.WriteByte('}')
		return b.String()
	}
	for _, tt := range []struct {
		in     string
		key    string // "" means accepted
		nested bool
	}{
		{`{"a":1,"a":2}`, "a", false},
		{`{"a":1,"a":1}`, "a", false},
		{`{"a":"x","\u0061":"y"}`, "a", false},
		{`{"\u0061":"x","a":"y"}`, "a", false},
		{`{"é":1,"\u00e9":2}`, "é", false},
		{`{"😀":1,"\ud83d\ude00":2}`, "😀", false},
		{`{"a\/b":1,"a/b":2}`, "a/b", false},
		{`{"":1,"":2}`, "", false}, // checked with the error type below
		{`{"a":{"b":1,"b":2}}`, "b", true},
		{`{"a":[{"b":1},{"c":1,"c":2}]}`, "c", true},
		{`{"a":{"b":1},"b":2,"a":3}`, "a", false},
		{`{"a":{"a":1}}`, "", false},
		{`{"x":{"a":1},"y":{"a":1},"a":1}`, "", false},
		{`{"x":{"a":{"a":{"a":1}}},"a":[{"a":1},{"a":2}]}`, "", false},
		{many(40), "", false},
		{many(40)[:len(many(40))-1] + `,"` + name(22) + `":1}`, name(22), false}, // found by the map
		{many(40)[:len(many(40))-1] + `,"k":1}`, "k", false},                     // first name, after the switch to the map
		{`{"o":` + many(20)[:len(many(20))-1] + `,"` + name(3) + `":1}}`, name(3), true},
		{`{"o":` + many(20) + `,"` + name(3) + `":1}`, "", false},
	} {
		_, err := ReadObject(tt.in)
		var dup *DuplicateKeyError
		isDup := errors.As(err, &dup)
		switch {
		case tt.key == "" && tt.in != `{"":1,"":2}`:
			if err != nil {
				t.Errorf("%.80s: %v", tt.in, err)
			}
		case !isDup || dup.Key != tt.key || dup.Nested != tt.nested:
			t.Errorf("%.80s: %v (%+v), want duplicate %q nested=%v", tt.in, err, dup, tt.key, tt.nested)
		case strings.Contains(err.Error(), `"`+tt.key+`"`):
			t.Errorf("the message names the key: %v", err)
		}
	}
}

func TestReadObjectDepth(t *testing.T) {
	// Each builds a body whose deepest container is at depth d (the
	// top-level object is depth 1).
	shapes := map[string]func(d int) string{
		"arrays": func(d int) string {
			return `{"a":` + strings.Repeat("[", d-1) + strings.Repeat("]", d-1) + `}`
		},
		"objects": func(d int) string {
			return strings.Repeat(`{"a":`, d-1) + `{}` + strings.Repeat(`}`, d-1)
		},
		"mixed": func(d int) string { // {"a":[{"a":[...]}]}
			s := ""
			for level := d; level >= 2; level-- {
				switch {
				case level%2 == 0:
					s = "[" + s + "]"
				case s == "":
					s = "{}"
				default:
					s = `{"a":` + s + "}"
				}
			}
			return `{"a":` + s + `}`
		},
	}
	for name, build := range shapes {
		if _, err := ReadObject(build(MaxDepth)); err != nil {
			t.Errorf("%s at depth %d: %v", name, MaxDepth, err)
		}
		if _, err := ReadObject(build(MaxDepth + 1)); !errors.Is(err, ErrTooDeep) {
			t.Errorf("%s at depth %d: %v", name, MaxDepth+1, err)
		}
	}
	// Far deeper than a recursive reader's stack would like: refused at once.
	if _, err := ReadObject(`{"a":` + strings.Repeat("[", 1<<20)); !errors.Is(err, ErrTooDeep) {
		t.Errorf("a million brackets: %v", err)
	}
}

// Every raw byte below 0x20 is refused inside a string (RFC 8259 §7); DEL
// and the rest of ASCII are not.
func TestReadObjectRawBytes(t *testing.T) {
	for c := range 0x80 {
		body := `{"k":"a` + string(rune(c)) + `b"}`
		_, err := ReadObject(body)
		switch {
		case c < 0x20:
			var se *SyntaxError
			if !errors.As(err, &se) || se.msg != "control character in a string" {
				t.Errorf("raw byte %#x: %v", c, err)
			}
		case c == '"' || c == '\\':
		case err != nil:
			t.Errorf("raw byte %#x: %v", c, err)
		}
	}
}
