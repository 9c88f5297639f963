package jsonx

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzReadObject is differential against encoding/json:
//   - whatever ReadObject accepts, encoding/json accepts as an object, and
//     every string (names too, at every level) decodes to the same text;
//   - whatever encoding/json accepts as an object that also meets the rules
//     it does not enforce (valid UTF-8 with no U+FFFD after decoding, so no
//     lone surrogate escapes; distinct names in every object; depth at most
//     MaxDepth), ReadObject accepts.
func FuzzReadObject(f *testing.F) {
	for _, s := range []string{
		`{"grantType":"client_credentials","additionalInfo":{}}`,
		`{"grant_type":"client_credentials","client_id":"c","client_secret":"s","scope":["a","b"]}`,
		`{"a":1,"a":2}`, `{"a":1,"\u0061":2}`, `{"a":{"b":1,"b":2}}`, `{"x":{"a":1},"y":{"a":1}}`,
		`[1]`, `{"a":"\ud800"}`, `{"a":"\udc00"}`, `{"a":"\ud800\u0041"}`, `{"a":"\ud83d\ude00"}`,
		"{\"a\":\"\xff\"}", "{\"a\":\"\xed\xa0\x80\"}", "{\"a\":\"\xc0\x80\"}", "{\"a\":\"\x00\"}",
		`{"a":"\u0000\ufffd"}`, "{\"a\":\"\xef\xbf\xbd\"}",
		`{"n":-0.5e+10,"t":true,"f":false,"z":null,"arr":[[],{},"s",1]}`,
		`{"a":` + strings.Repeat("[", MaxDepth-1) + strings.Repeat("]", MaxDepth-1) + `}`,
		`{"a":` + strings.Repeat("[", MaxDepth) + strings.Repeat("]", MaxDepth) + `}`,
		`{"a":1} `, `{"a":1}x`, ` { } `, `{"a":01}`, `{"a":1.}`, "{\"a\":\"\\/\\b\\f\\n\\r\\t\\\"\\\\\"}",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		o, err := ReadObject(string(body))
		std, ok, strict := stdObject(body)
		if err != nil {
			var se *SyntaxError
			var de *DuplicateKeyError
			if !errors.As(err, &se) && !errors.As(err, &de) && err != ErrNotObject && err != ErrTrailingData && err != ErrTooDeep {
				t.Fatalf("%q: undocumented error %v", body, err)
			}
			if strict {
				t.Fatalf("refused %q (%v), which encoding/json reads as a strict object", body, err)
			}
			return
		}
		if !ok {
			t.Fatalf("accepted %q, which encoding/json does not read as an object", body)
		}
		got := objectAny(t, o)
		if !reflect.DeepEqual(got, std) {
			t.Fatalf("%q: read as\n%#v\nencoding/json reads\n%#v", body, got, std)
		}
		// What encoding/json lets through and ReadObject must not.
		if !utf8.Valid(body) || !distinctAndShallow(body) {
			t.Fatalf("accepted %q: invalid UTF-8, a repeated name or too deep", body)
		}
		// A lone surrogate escape decodes to U+FFFD, in encoding/json as in
		// utf8.AppendRune, so equal values do not rule it out: every U+FFFD
		// read must have been in the body, raw or escaped.
		lower := strings.ToLower(string(body))
		if n := replacements(got); n > strings.Count(lower, "\ufffd")+strings.Count(lower, `\ufffd`) {
			t.Fatalf("accepted %q: %d U+FFFD read, not all of them in the body", body, n)
		}
	})
}

// stdObject reads body with encoding/json (numbers as json.Number). ok: it
// is one JSON object. strict: also valid UTF-8 that decodes without
// U+FFFD, with distinct names in every object and depth at most MaxDepth.
func stdObject(body []byte) (v map[string]any, ok, strict bool) {
	if !json.Valid(body) {
		return nil, false, false
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var a any
	if dec.Decode(&a) != nil {
		return nil, false, false
	}
	v, ok = a.(map[string]any)
	if !ok {
		return nil, false, false
	}
	return v, true, utf8.Valid(body) && distinctAndShallow(body) && !hasReplacement(a)
}

// distinctAndShallow walks encoding/json's tokens: no object repeats a
// name, and containers nest at most MaxDepth deep.
func distinctAndShallow(body []byte) bool {
	type frame struct {
		object, nameNext bool
		names            map[string]bool
	}
	var stack []*frame
	valueDone := func() {
		if n := len(stack); n > 0 && stack[n-1].object {
			stack[n-1].nameNext = true
		}
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	for {
		tok, err := dec.Token()
		if err != nil {
			return true
		}
		n := len(stack)
		if d, ok := tok.(json.Delim); ok {
			switch d {
			case '{', '[':
				stack = append(stack, &frame{object: d == '{', nameNext: true, names: map[string]bool{}})
				if len(stack) > MaxDepth {
					return false
				}
			default:
				stack = stack[:n-1]
				valueDone()
			}
			continue
		}
		if n > 0 && stack[n-1].object && stack[n-1].nameNext {
			name := tok.(string)
			if stack[n-1].names[name] {
				return false
			}
			stack[n-1].names[name] = true
			stack[n-1].nameNext = false
			continue
		}
		valueDone()
	}
}

func hasReplacement(v any) bool { return replacements(v) > 0 }

// replacements counts U+FFFD in the strings and names of v.
func replacements(v any) int {
	n := 0
	switch v := v.(type) {
	case string:
		n = strings.Count(v, "\ufffd")
	case []any:
		for _, e := range v {
			n += replacements(e)
		}
	case map[string]any:
		for k, e := range v {
			n += strings.Count(k, "\ufffd") + replacements(e)
		}
	}
	return n
}

// objectAny converts o to what encoding/json with UseNumber gives, reading
// strings and objects through jsonx's own accessors.
func objectAny(t *testing.T, o Object) map[string]any {
	m := make(map[string]any, o.Len())
	for name, v := range o.All() {
		if !utf8.ValidString(name) {
			t.Fatalf("name %q is not UTF-8", name)
		}
		m[name] = valueAny(t, v)
	}
	return m
}

func valueAny(t *testing.T, v Value) any {
	switch v.Kind() {
	case KindNull:
		return nil
	case KindBool:
		return v.Raw() == "true"
	case KindNumber:
		return json.Number(v.Raw())
	case KindString:
		s, ok := v.Str()
		if !ok || !utf8.ValidString(s) {
			t.Fatalf("string %s: %q %v", v.Raw(), s, ok)
		}
		return s
	case KindObject:
		o, ok := v.Object()
		if !ok {
			t.Fatalf("object %s unreadable", v.Raw())
		}
		return objectAny(t, o)
	case KindArray:
		if ss, ok := v.StringArray(); ok {
			a := make([]any, len(ss))
			for i, s := range ss {
				a[i] = s
			}
			return a
		}
		// Mixed arrays have no jsonx accessor beyond Raw; encoding/json
		// reads that slice, which checks its bounds.
		dec := json.NewDecoder(strings.NewReader(v.Raw()))
		dec.UseNumber()
		var a any
		if err := dec.Decode(&a); err != nil {
			t.Fatalf("array %s: %v", v.Raw(), err)
		}
		return a
	}
	t.Fatalf("kind %d", v.Kind())
	return nil
}
