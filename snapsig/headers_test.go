package snapsig

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

func validHeaders() http.Header {
	h := http.Header{}
	h.Set("Authorization", "Bearer "+kaToken)
	h.Set(HeaderTimestamp, kaTimestamp)
	h.Set(HeaderSignature, kaSymSig)
	h.Set(HeaderPartnerID, "0f3c2a1b9d8e7f6a5b4c3d2e1f0a9b8c")
	h.Set(HeaderExternalID, "41807553358950093184162180797837")
	h.Set(HeaderChannelID, "95221")
	return h
}

func TestParseHeaders(t *testing.T) {
	h := validHeaders()
	h.Set(HeaderDeviceID, "09864ADCASA device 1")
	h.Set(HeaderOrigin, "https://merchant.example")
	got, fe := ParseHeaders(h, true)
	if fe != nil {
		t.Fatal(fe)
	}
	want := Headers{
		AccessToken: kaToken, Timestamp: kaTimestamp, Time: time.Date(2024, 3, 26, 9, 1, 41, 0, time.UTC),
		Signature: kaSymSig, PartnerID: "0f3c2a1b9d8e7f6a5b4c3d2e1f0a9b8c", ExternalID: "41807553358950093184162180797837",
		ChannelID: "95221", DeviceID: "09864ADCASA device 1", Origin: "https://merchant.example",
	}
	if !got.Time.Equal(want.Time) {
		t.Errorf("Time = %v", got.Time)
	}
	got.Time = want.Time
	if got != want {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}

	// Variants that are accepted.
	for name, mutate := range map[string]func(http.Header){
		"lower-case scheme":           func(h http.Header) { h.Set("Authorization", "bearer "+kaToken) },
		"JWT token":                   func(h http.Header) { h.Set("Authorization", "Bearer eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln-_") },
		"padded token":                func(h http.Header) { h.Set("Authorization", "Bearer abc+/==") },
		"two spaces after Bearer":     func(h http.Header) { h.Set("Authorization", "Bearer  "+kaToken) },
		"Z timestamp with fraction":   func(h http.Header) { h.Set(HeaderTimestamp, "2026-11-23T05:39:09.359Z") },
		"unpadded signature":          func(h http.Header) { h.Set(HeaderSignature, strings.TrimRight(kaSymSig, "=")) },
		"RSA signature":               func(h http.Header) { h.Set(HeaderSignature, kaAsySig) },
		"UUID external ID":            func(h http.Header) { h.Set(HeaderExternalID, "3b241101-e2bb-4255-8caf-4136c566a962") },
		"one-character IDs":           func(h http.Header) { h.Set(HeaderExternalID, "1"); h.Set(HeaderPartnerID, "p") },
		"36-character partner ID":     func(h http.Header) { h.Set(HeaderPartnerID, strings.Repeat("P", 36)) },
		"punctuation in external ID":  func(h http.Header) { h.Set(HeaderExternalID, "sdk-2024/01:x_y.z~!") },
		"surrounding spaces and tabs": func(h http.Header) { h.Set(HeaderChannelID, " \t95221 ") },
		"blank optional header":       func(h http.Header) { h.Set(HeaderDeviceID, "") },
		"longest device ID":           func(h http.Header) { h.Set(HeaderDeviceID, strings.Repeat("d", MaxDeviceIDLen)) },
	} {
		h := validHeaders()
		mutate(h)
		if _, fe := ParseHeaders(h, true); fe != nil {
			t.Errorf("%s: %v", name, fe)
		}
	}
}

func TestParseHeadersRefuses(t *testing.T) {
	missing := func(f string) *FieldError { return &FieldError{Field: f, Missing: true} }
	bad := func(f string) *FieldError { return &FieldError{Field: f} }
	secretish := "S3cr3tV4lu3-never-echo"
	for _, c := range []struct {
		name   string
		mutate func(http.Header)
		want   *FieldError
	}{
		{"no Authorization", func(h http.Header) { h.Del("Authorization") }, missing("Authorization")},
		{"blank Authorization", func(h http.Header) { h.Set("Authorization", "  ") }, missing("Authorization")},
		{"Basic scheme", func(h http.Header) { h.Set("Authorization", "Basic "+secretish) }, bad("Authorization")},
		{"Bearer without token", func(h http.Header) { h.Set("Authorization", "Bearer") }, bad("Authorization")},
		{"Bearer and spaces", func(h http.Header) { h.Set("Authorization", "Bearer   ") }, bad("Authorization")},
		{"Bearer glued", func(h http.Header) { h.Set("Authorization", "Bearer"+kaToken) }, bad("Authorization")},
		{"token with space", func(h http.Header) { h.Set("Authorization", "Bearer a b") }, bad("Authorization")},
		{"token with comma", func(h http.Header) { h.Set("Authorization", "Bearer a,b") }, bad("Authorization")},
		{"token = inside", func(h http.Header) { h.Set("Authorization", "Bearer a=b") }, bad("Authorization")},
		{"token only =", func(h http.Header) { h.Set("Authorization", "Bearer ==") }, bad("Authorization")},
		{"token too long", func(h http.Header) { h.Set("Authorization", "Bearer "+strings.Repeat("a", MaxAccessTokenLen+1)) }, bad("Authorization")},
		{"two Authorization", func(h http.Header) { h.Add("Authorization", "Bearer x") }, bad("Authorization")},
		{"no timestamp", func(h http.Header) { h.Del(HeaderTimestamp) }, missing(HeaderTimestamp)},
		{"timestamp without offset", func(h http.Header) { h.Set(HeaderTimestamp, "2024-03-26T16:01:41") }, bad(HeaderTimestamp)},
		{"timestamp lower-case t", func(h http.Header) { h.Set(HeaderTimestamp, "2024-03-26t16:01:41Z") }, bad(HeaderTimestamp)},
		{"timestamp as epoch", func(h http.Header) { h.Set(HeaderTimestamp, "1711443701") }, bad(HeaderTimestamp)},
		{"two timestamps", func(h http.Header) { h.Add(HeaderTimestamp, kaTimestamp) }, bad(HeaderTimestamp)},
		{"no signature", func(h http.Header) { h.Del(HeaderSignature) }, missing(HeaderSignature)},
		{"signature not base64", func(h http.Header) { h.Set(HeaderSignature, "not base64!") }, bad(HeaderSignature)},
		{"signature too long", func(h http.Header) { h.Set(HeaderSignature, strings.Repeat("A", MaxSignatureLen+4)) }, bad(HeaderSignature)},
		{"no partner ID", func(h http.Header) { h.Del(HeaderPartnerID) }, missing(HeaderPartnerID)},
		{"partner ID 37", func(h http.Header) { h.Set(HeaderPartnerID, strings.Repeat("P", 37)) }, bad(HeaderPartnerID)},
		{"partner ID with space", func(h http.Header) { h.Set(HeaderPartnerID, "a b") }, bad(HeaderPartnerID)},
		{"no external ID", func(h http.Header) { h.Del(HeaderExternalID) }, missing(HeaderExternalID)},
		{"external ID 37", func(h http.Header) { h.Set(HeaderExternalID, strings.Repeat("1", 37)) }, bad(HeaderExternalID)},
		{"external ID non-ASCII", func(h http.Header) { h.Set(HeaderExternalID, "caf\u00e9") }, bad(HeaderExternalID)},
		{"external ID control", func(h http.Header) { h.Set(HeaderExternalID, "a\x01b") }, bad(HeaderExternalID)},
		{"two external IDs", func(h http.Header) { h.Add(HeaderExternalID, "2") }, bad(HeaderExternalID)},
		{"no channel ID", func(h http.Header) { h.Del(HeaderChannelID) }, missing(HeaderChannelID)},
		{"channel ID 4 digits", func(h http.Header) { h.Set(HeaderChannelID, "9522") }, bad(HeaderChannelID)},
		{"channel ID 6 digits", func(h http.Header) { h.Set(HeaderChannelID, "952210") }, bad(HeaderChannelID)},
		{"channel ID letters", func(h http.Header) { h.Set(HeaderChannelID, "WEB01") }, bad(HeaderChannelID)},
		{"device ID too long", func(h http.Header) { h.Set(HeaderDeviceID, strings.Repeat("d", MaxDeviceIDLen+1)) }, bad(HeaderDeviceID)},
		{"device ID control", func(h http.Header) { h.Set(HeaderDeviceID, "a\x7fb") }, bad(HeaderDeviceID)},
		{"two origins", func(h http.Header) { h.Set(HeaderOrigin, "a"); h.Add(HeaderOrigin, "b") }, bad(HeaderOrigin)},
		{"origin non-ASCII", func(h http.Header) { h.Set(HeaderOrigin, "https://b\u00fccher.example") }, bad(HeaderOrigin)},
		// Several problems: the first in the documented order is reported.
		{"timestamp and channel", func(h http.Header) { h.Del(HeaderChannelID); h.Set(HeaderTimestamp, "x") }, bad(HeaderTimestamp)},
	} {
		h := validHeaders()
		c.mutate(h)
		got, fe := ParseHeaders(h, true)
		if fe == nil || *fe != *c.want {
			t.Errorf("%s: %v, want %v", c.name, fe, c.want)
			continue
		}
		if got != (Headers{}) {
			t.Errorf("%s: returned headers with the error: %+v", c.name, got)
		}
		if msg := fe.Error(); strings.Contains(msg, secretish) || !strings.Contains(msg, c.want.Field) {
			t.Errorf("%s: message %q", c.name, msg)
		}
	}
}

func TestParseHeadersWithoutToken(t *testing.T) {
	h := validHeaders()
	h.Del("Authorization")
	got, fe := ParseHeaders(h, false)
	if fe != nil || got.AccessToken != "" {
		t.Fatalf("no token needed, none sent: %+v, %v", got, fe)
	}
	h.Set("Authorization", "Bearer "+kaToken)
	if got, fe = ParseHeaders(h, false); fe != nil || got.AccessToken != kaToken {
		t.Errorf("no token needed, one sent: %q, %v", got.AccessToken, fe)
	}
	h.Set("Authorization", "Basic dXNlcjpwYXNz")
	if got, fe = ParseHeaders(h, false); fe != nil || got.AccessToken != "" {
		t.Errorf("no token needed, Basic sent: %q, %v", got.AccessToken, fe)
	}
	h.Del(HeaderExternalID)
	if _, fe = ParseHeaders(h, false); fe == nil || *fe != (FieldError{Field: HeaderExternalID, Missing: true}) {
		t.Errorf("no token needed, no external ID: %v", fe)
	}
}

// FuzzParseHeaders feeds arbitrary values (several per header) to
// ParseHeaders: it never panics, an accepted call's values meet the
// documented formats, an error names a header and never contains a value.
func FuzzParseHeaders(f *testing.F) {
	f.Add("Bearer "+kaToken, kaTimestamp, kaSymSig, "partner", "ext-1", "95221", "", "", true, false)
	f.Add("", "", "", "", "", "", "", "", false, true)
	f.Add("bearer  x==", "2026-11-23T05:39:09.359Z", "AAAA", strings.Repeat("p", 36), "e", "00000", "dev", "https://o", true, true)
	f.Add("Basic x", "2024-13-01T00:00:00+07:00", "!!", "a b", "\x00", "9522a", "\xff", "o\n", true, false)
	f.Fuzz(func(t *testing.T, auth, ts, sig, partner, ext, channel, device, origin string, needToken, twice bool) {
		h := http.Header{}
		vals := map[string]string{"Authorization": auth, HeaderTimestamp: ts, HeaderSignature: sig, HeaderPartnerID: partner,
			HeaderExternalID: ext, HeaderChannelID: channel, HeaderDeviceID: device, HeaderOrigin: origin}
		for k, v := range vals {
			if v != "" {
				h.Add(k, v)
				if twice && k == HeaderExternalID {
					h.Add(k, v)
				}
			}
		}
		got, fe := ParseHeaders(h, needToken)
		if fe != nil {
			if fe.Field == "" || got != (Headers{}) {
				t.Fatalf("error %v with %+v", fe, got)
			}
			if _, known := vals[fe.Field]; !known {
				t.Fatalf("error names unknown field %q", fe.Field)
			}
			msg := fe.Error()
			for _, v := range vals {
				if v = strings.TrimSpace(v); len(v) > 3 && strings.Contains(msg, v) && !strings.Contains("snapsig: malformed missing header "+fe.Field, v) {
					t.Fatalf("error %q echoes a value %q", msg, v)
				}
			}
			return
		}
		if twice && ext != "" {
			t.Fatal("a repeated X-EXTERNAL-ID was accepted")
		}
		if needToken && (got.AccessToken == "" || !strings.HasSuffix(auth, got.AccessToken)) {
			t.Fatalf("token %q from %q", got.AccessToken, auth)
		}
		if _, err := time.Parse(time.RFC3339Nano, got.Timestamp); err != nil || !strings.Contains(ts, got.Timestamp) {
			t.Fatalf("timestamp %q accepted", got.Timestamp)
		}
		if _, ok := DecodeSignature(got.Signature); !ok {
			t.Fatalf("signature %q accepted", got.Signature)
		}
		if !ValidID(got.PartnerID) || !ValidID(got.ExternalID) || !ValidChannelID(got.ChannelID) {
			t.Fatalf("IDs %q %q %q accepted", got.PartnerID, got.ExternalID, got.ChannelID)
		}
		for _, v := range []string{got.DeviceID, got.Origin} {
			for i := 0; i < len(v); i++ {
				if v[i] < 0x20 || v[i] > 0x7e {
					t.Fatalf("optional header %q accepted", v)
				}
			}
		}
	})
}

func BenchmarkParseHeaders(b *testing.B) {
	h := validHeaders()
	for b.Loop() {
		if _, fe := ParseHeaders(h, true); fe != nil {
			b.Fatal(fe)
		}
	}
}
