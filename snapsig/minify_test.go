package snapsig

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
)

// dokuBody is the "before" body of DOKU's published symmetric-signature
// example; DOKU gives its minified form's hash as dokuHash. Its strings
// keep their spaces ("  088899", "Jokul Doe").
const dokuBody = `{
   "partnerServiceId":"  088899",
   "customerNo":"12345678901234567890",
   "virtualAccountNo":"  08889912345678901234567890",
   "virtualAccountName":"Jokul Doe",
   "virtualAccountEmail":"jokul@email.com",
   "virtualAccountPhone":"6281828384858",
   "trxId":"abcdefgh1234",
   "totalAmount":{
      "value":"12345678.00",
      "currency":"IDR"
   }
}`

const (
	dokuMinified = `{"partnerServiceId":"  088899","customerNo":"12345678901234567890","virtualAccountNo":"  08889912345678901234567890","virtualAccountName":"Jokul Doe","virtualAccountEmail":"jokul@email.com","virtualAccountPhone":"6281828384858","trxId":"abcdefgh1234","totalAmount":{"value":"12345678.00","currency":"IDR"}}`
	// printf '%s' "$dokuMinified" | openssl dgst -sha256 -r (and DOKU's docs)
	dokuHash = "3274fab8dac896837b106a16da2a974e7e65142dcecb4b768ef0294102838977"
	// printf '' | openssl dgst -sha256 -r
	emptyHash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
)

func TestMinify(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{dokuBody, dokuMinified},
		{"", ""},
		{" \t\r\n ", ""},
		{`{}`, `{}`},
		{" { } ", `{}`},
		{"[ 1 , 2.50 , -0 , 1E+2 , 1e-07 ]", "[1,2.50,-0,1E+2,1e-07]"},
		{`{"a" : "x  y" , "b":{"c" :[ true,false , null ]}}`, `{"a":"x  y","b":{"c":[true,false,null]}}`},
		{`{"z":1,"a":2,"z":3}`, `{"z":1,"a":2,"z":3}`},   // order and duplicates as sent
		{`"\u00e9 \" \\ \/ \n"`, `"\u00e9 \" \\ \/ \n"`}, // escapes untouched
		{"\"caf\u00e9 \U0001F600\"", "\"caf\u00e9 \U0001F600\""},
		{`{"html":"<a href='x'>&amp;</a>"}`, `{"html":"<a href='x'>&amp;</a>"}`},
		{"\"\u2028\u2029\"", "\"\u2028\u2029\""},
		{`"\ud800"`, `"\ud800"`}, // a lone surrogate escape is grammatical JSON
		{" 0 ", "0"},
		{"\n\"x\"\n", `"x"`},
	} {
		got, err := Minify([]byte(c.in))
		if err != nil || string(got) != c.want {
			t.Errorf("Minify(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
}

func TestMinifyRefuses(t *testing.T) {
	for _, in := range []string{
		"{", "}", "[", `{"a"}`, `{"a":}`, `{"a":1,}`, `[1,]`, `[,1]`, `{,}`, `{"a":1 "b":2}`,
		`{1:2}`, `{"a"::1}`, `[1 2]`, `1 2`, `{} {}`, `{}x`, `"abc`, `"a\x"`, `"\u12"`, `"\u12g4"`,
		"\"a\tb\"", "\"a\nb\"", "\"\x00\"", "\"\xff\"", "\"\xc0\x80\"", "\"\xed\xa0\x80\"",
		`01`, `-`, `-a`, `1.`, `.5`, `1e`, `1e+`, `+1`, `tru`, `True`, `nul`, `nulll`, `NaN`,
		"\ufeff{}", "\v{}", "\f{}", "{}\x00", `'a'`,
	} {
		if got, err := Minify([]byte(in)); err != ErrNotJSON {
			t.Errorf("Minify(%q) = %q, %v; want ErrNotJSON", in, got, err)
		}
		if utf8.ValidString(in) && json.Valid([]byte(in)) {
			t.Errorf("%q: encoding/json accepts it; the test case is wrong", in)
		}
	}
}

func TestMinifyDepth(t *testing.T) {
	ok := strings.Repeat("[", MaxDepth) + strings.Repeat("]", MaxDepth)
	if _, err := Minify([]byte(ok)); err != nil {
		t.Errorf("depth %d: %v", MaxDepth, err)
	}
	deep := strings.Repeat(`{"a":`, MaxDepth/2) + strings.Repeat("[", MaxDepth/2+1) + "1" + strings.Repeat("]", MaxDepth/2+1) + strings.Repeat("}", MaxDepth/2)
	if _, err := Minify([]byte(deep)); err != ErrNotJSON {
		t.Errorf("depth %d: %v, want ErrNotJSON", MaxDepth+1, err)
	}
	// encoding/json draws the line at the same depth.
	if !json.Valid([]byte(ok)) || json.Valid([]byte(deep)) {
		t.Error("encoding/json's depth limit is not MaxDepth")
	}
}

// A compact body, or one with only surrounding whitespace, is returned
// without a copy; interior whitespace makes a new slice.
func TestMinifySharesCompactInput(t *testing.T) {
	in := []byte("  " + dokuMinified + "\n")
	got, err := Minify(in)
	if err != nil || string(got) != dokuMinified {
		t.Fatalf("%q, %v", got, err)
	}
	if &got[0] != &in[2] {
		t.Error("compact body was copied")
	}
	if cap(got) != len(got) {
		t.Error("result's capacity reaches into the caller's slice: an append would overwrite it")
	}
	in2 := []byte(dokuBody)
	got2, _ := Minify(in2)
	got2[0] = 'X'
	if in2[0] != '{' {
		t.Error("minified copy shares memory with the input")
	}
	if allocs := testing.AllocsPerRun(100, func() { Minify([]byte(dokuMinified)) }); allocs > 1 {
		t.Errorf("%v allocations minifying a compact body", allocs)
	}
}

func TestBodyHash(t *testing.T) {
	m, err := Minify([]byte(dokuBody))
	if err != nil {
		t.Fatal(err)
	}
	if got := BodyHash(m); got != dokuHash {
		t.Errorf("BodyHash(DOKU example) = %s, want %s (DOKU's published value)", got, dokuHash)
	}
	if got := BodyHash(nil); got != emptyHash {
		t.Errorf("BodyHash(empty) = %s", got)
	}
	if opensslMissing(t) {
		return
	}
	for _, body := range []string{"", dokuMinified, `{"name":"Jos\u00e9 ` + "\u00e9" + `","n":1.50}`, `[` + strings.Repeat(`"x",`, 1000) + `1]`} {
		out := openssl(t, []byte(body), "dgst", "-sha256", "-r")
		want, _, _ := strings.Cut(string(out), " ")
		if got := BodyHash([]byte(body)); got != want {
			t.Errorf("BodyHash(%.40q) = %s, openssl says %s", body, got, want)
		}
	}
}

// FuzzMinify is differential against encoding/json: for input in valid
// UTF-8, Minify succeeds exactly when json.Valid accepts it (or it is all
// whitespace) and then returns json.Compact's bytes; input in invalid
// UTF-8 is refused (encoding/json lets it through inside strings).
// Minifying twice changes nothing, and the result is valid JSON.
func FuzzMinify(f *testing.F) {
	for _, s := range []string{
		dokuBody, dokuMinified, "", " ", "{}", "[]", `{"a":[1,{"b":null}],"c":"d e"}`, `"\ud800\udc00"`,
		"[1,2", `{"a":1}}`, "\"\xff\"", `-0.0e-0`, `{"a":"\u00"}`, "[\n]", `[[[[[]]]]]`, "tru", "1 ",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		orig := bytes.Clone(in)
		got, err := Minify(in)
		if !bytes.Equal(in, orig) {
			t.Fatalf("Minify modified its input")
		}
		blank := len(bytes.Trim(in, " \t\r\n")) == 0
		valid := utf8.Valid(in) && (blank || json.Valid(in))
		if err != nil {
			if err != ErrNotJSON {
				t.Fatalf("Minify(%q): undocumented error %v", in, err)
			}
			if valid {
				t.Fatalf("Minify(%q) refused valid JSON", in)
			}
			return
		}
		if !valid {
			t.Fatalf("Minify(%q) = %q, accepting what is not valid UTF-8 JSON", in, got)
		}
		if blank {
			if len(got) != 0 {
				t.Fatalf("Minify(%q) = %q, want empty", in, got)
			}
			return
		}
		var want bytes.Buffer
		if err := json.Compact(&want, in); err != nil {
			t.Fatalf("json.Compact(%q): %v", in, err)
		}
		if !bytes.Equal(got, want.Bytes()) {
			t.Fatalf("Minify(%q) = %q, json.Compact gives %q", in, got, want.Bytes())
		}
		again, err := Minify(got)
		if err != nil || !bytes.Equal(again, got) {
			t.Fatalf("Minify not idempotent on %q: %q, %v", got, again, err)
		}
		if !json.Valid(got) {
			t.Fatalf("Minify(%q) = %q, not valid JSON", in, got)
		}
	})
}

func BenchmarkMinify(b *testing.B) {
	for _, c := range []struct{ name, body string }{{"compact", dokuMinified}, {"pretty", dokuBody}} {
		b.Run(c.name, func(b *testing.B) {
			in := []byte(c.body)
			b.SetBytes(int64(len(in)))
			for b.Loop() {
				if _, err := Minify(in); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
